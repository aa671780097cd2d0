"""The library's own warnings, through structlog, imported on first use.

structlog is the logging pipeline the product plugs into, but importing it costs more
than the rest of the capture path together, and most processes never warn: so it is
loaded when the first warning is written. A broken logging set-up never raises into the
host app.
"""

from __future__ import annotations

import contextlib
from typing import Any

__all__ = ["warn"]

LOGGER_NAME = "audit_middleware"


def warn(message: str, **fields: Any) -> None:
    """Log ``message`` (and ``fields``) as a warning of the ``audit_middleware`` logger."""
    with contextlib.suppress(Exception):
        import structlog  # noqa: PLC0415 - see the module docstring

        structlog.get_logger(LOGGER_NAME).warning(message, **fields)
