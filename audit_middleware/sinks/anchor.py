"""The external anchor: checkpoints copied to a place whoever controls the store cannot rewrite.

Without it, someone who can write the store can drop the newest records together with
their checkpoints, and what is left is a shorter chain that verifies. With each
checkpoint also appended to an append-only file elsewhere (another host's mount, a
file with ``chattr +a``, a log shipper's input), ``verify --anchor FILE`` finds the
chain ending before its last anchored checkpoint: truncated.

``FileAnchor`` appends one JSON line per checkpoint (``{"checkpoint": {...}}``) with
one ``write`` on a descriptor opened ``O_APPEND``, then ``fsync``: processes sharing
the store append to the same file without interleaving lines. A checkpoint the file
cannot take (disk full, mount gone) is kept and tried again with the next one; the
store still has it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from audit_middleware.logs import warn
from audit_middleware.model.checkpoints import Checkpoint
from audit_middleware.model.encoding import dumps

__all__ = ["Anchor", "FileAnchor"]

_MAX_PENDING = 10_000  # checkpoints kept in memory while the anchor is away


class Anchor(Protocol):
    """Where checkpoints are copied after the transaction that stored them committed."""

    def publish(self, checkpoints: Sequence[Checkpoint]) -> None:
        """Copy ``checkpoints``; never raises (the store keeps them anyway)."""


class FileAnchor:
    """Append checkpoints to the file at ``path`` (created, with its folder, if missing)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._pending: list[Checkpoint] = []
        self.failures = 0
        """Appends that failed (their checkpoints were tried again later)."""

    def publish(self, checkpoints: Sequence[Checkpoint]) -> None:
        """Append ``checkpoints`` (and any that failed before); never raises."""
        with self._lock:
            self._pending.extend(checkpoints)
            if not self._pending:
                return
            data = b"".join(dumps(checkpoint.to_json()) + b"\n" for checkpoint in self._pending)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                try:
                    written = os.write(fd, data)
                    if written != len(data):
                        raise OSError(f"short write to the anchor ({written} of {len(data)} bytes)")
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                self.failures += 1
                del self._pending[:-_MAX_PENDING]
                warn(
                    "audit_anchor_failed",
                    path=str(self.path),
                    error=str(exc),
                    pending=len(self._pending),
                )
                return
            self._pending.clear()
