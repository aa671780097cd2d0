"""An opensearch-py serializer backed by orjson: bulk answers of 1,000 items parse faster."""

from __future__ import annotations

from typing import Any

import orjson
from opensearchpy.serializer import JSONSerializer


class OrjsonSerializer(JSONSerializer):
    """JSON in and out with orjson; falls back to opensearch-py's ``default`` for odd types."""

    def loads(self, s: str | bytes) -> Any:
        """Parse a response body."""
        return orjson.loads(s)

    def dumps(self, data: Any) -> str | bytes:
        """Encode a request body as text, as opensearch-py's helpers expect (they join bodies
        as str); str and bytes (the shipper's NDJSON bulk bodies) pass through unchanged."""
        if isinstance(data, str | bytes):
            return data
        return orjson.dumps(data, default=self.default).decode("utf-8")
