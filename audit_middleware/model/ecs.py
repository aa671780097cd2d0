"""The slice of the ECS 9.4 field list that audit records use, read from ``ecs_fields.json``.

The JSON is extracted from the machine-readable ECS field list by ``tools/ecs_extract.py``;
record validation and the OpenSearch mapping both read it, so neither relies on memory.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

ECS_VERSION = "9.4.0"


@cache
def fields() -> dict[str, dict[str, Any]]:
    """ECS field definitions by flat name (type, normalize, allowed values...)."""
    text = Path(__file__).with_name("ecs_fields.json").read_text("utf-8")
    loaded: dict[str, dict[str, Any]] = json.loads(text)
    return loaded


@cache
def expected_event_types() -> dict[str, frozenset[str]]:
    """ECS event.category values and, for each, the event.type values it allows."""
    allowed = fields()["event.category"]["allowed_values"]
    return {entry["name"]: frozenset(entry.get("expected_event_types", ())) for entry in allowed}
