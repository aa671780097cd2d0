"""Where audit records go. A sink takes finished, redacted events; it must never block or raise.

``MemorySink`` (tests), ``JsonLinesSink`` (files, stdout), ``SQLiteSink`` (the embedded
default) and ``OpenSearchSink`` (production; ``sinks.opensearch``) share one per-process
worker mechanism (``sinks.worker``); ``sinks.defaults`` picks one from the environment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from audit_middleware.sinks.base import Sink
from audit_middleware.sinks.jsonl import JsonLinesSink
from audit_middleware.sinks.memory import MemorySink

if TYPE_CHECKING:
    from audit_middleware.sinks.opensearch.sink import OpenSearchSink
    from audit_middleware.sinks.sqlite import SQLiteSink

__all__ = ["JsonLinesSink", "MemorySink", "OpenSearchSink", "SQLiteSink", "Sink"]

_LAZY = {
    "SQLiteSink": "audit_middleware.sinks.sqlite",
    "OpenSearchSink": "audit_middleware.sinks.opensearch.sink",
}


def __getattr__(name: str) -> Any:
    # The SQLite and OpenSearch sinks load their dependencies only when asked for.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'audit_middleware.sinks' has no attribute {name!r}")
    import importlib  # noqa: PLC0415

    return getattr(importlib.import_module(module), name)
