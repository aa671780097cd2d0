"""Where audit records go. A sink takes finished events; it must never block or raise."""

from audit_middleware.sinks.base import Sink
from audit_middleware.sinks.jsonl import JsonLinesSink
from audit_middleware.sinks.memory import MemorySink

__all__ = ["JsonLinesSink", "MemorySink", "Sink"]
