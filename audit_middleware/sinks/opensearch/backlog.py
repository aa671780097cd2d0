"""What waits on this host's disk for OpenSearch: the spool, the last resort and the dead letters.

Read from outside, without taking anything over (``audit-middleware status``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from audit_middleware import env
from audit_middleware.sinks.lastresort import waiting
from audit_middleware.sinks.opensearch.deadletter import DeadLetterFile
from audit_middleware.sinks.opensearch.spool import inspect

__all__ = ["backlog"]


def backlog(state_dir: Path, fallback: Path | None = None) -> dict[str, Any]:
    """The spool's records and the dead-letter count under ``state_dir``, and what waits in
    the last-resort directory ``fallback``."""
    spool = inspect(env.spool_dir(state_dir))
    dead_letters = env.dead_letter_path(state_dir)
    return {
        "state_dir": str(state_dir),
        "spool": {
            "records": spool.records,
            "bytes": spool.bytes,
            "segments": spool.segments,
            "corrupt_records": spool.corrupt_records,
            "oldest_undelivered_seconds": None
            if spool.oldest_unix_ms is None
            else round(time.time() - spool.oldest_unix_ms / 1000, 1),
        },
        "last_resort": {
            "records": 0 if fallback is None else waiting(fallback),
            "directory": None if fallback is None else str(fallback),
        },
        "dead_letters": _count_dead_letters(dead_letters),
    }


def _count_dead_letters(path: Path) -> int:
    if not path.exists():
        return 0
    with DeadLetterFile(path) as dead:
        return sum(1 for _ in dead.read())
