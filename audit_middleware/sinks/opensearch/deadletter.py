"""The dead-letter file: documents OpenSearch rejected for good, one JSON line each, with the reason.

A line looks like::

    {"@timestamp": "2024-05-01T12:00:00.123Z", "reason": "mapper_parsing_exception: ...",
     "status": 400, "document": {...the original document...}}

``document`` is the original JSON document, or its raw text when it is not valid JSON
(invalid UTF-8 is kept as ``\\xNN`` escapes). Rejections are rare, so every line is
fsynced: a dead-lettered record is as safe as a delivered one.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from audit_middleware.errors import AuditError
from audit_middleware.model.encoding import dumps, loads
from audit_middleware.model.timestamps import format_timestamp
from audit_middleware.sinks.jsonl import read_lines
from audit_middleware.sinks.private import FILE_MODE, private_directory

__all__ = ["DeadLetterFile"]


def _embed(document: bytes) -> Any:
    """The document as JSON when it parses, else as text, so the line itself stays valid JSON."""
    try:
        return loads(document)
    except ValueError:  # orjson.JSONDecodeError, also raised for invalid UTF-8
        return document.decode("utf-8", errors="backslashreplace")


class DeadLetterFile:
    """Appends rejected documents with their reason; safe across threads and processes.

    Each line is one ``os.write`` on an ``O_APPEND`` file, so lines from several worker
    processes never interleave.

    >>> import tempfile, pathlib
    >>> dead = DeadLetterFile(pathlib.Path(tempfile.mkdtemp()) / "dead-letter.jsonl")
    >>> dead.write(b'{"event": {"id": "1"}}', reason="mapper_parsing_exception", status=400)
    >>> [line["status"] for line in dead.read()]
    [400]
    >>> dead.close()
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        private_directory(self.path.parent)
        self._lock = threading.Lock()
        self._fd: int | None = os.open(
            self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE
        )
        self._written = 0

    @property
    def written(self) -> int:
        """Lines this object has written (not those of other processes or earlier runs)."""
        return self._written

    def write(self, document: bytes, reason: str, status: int | None) -> None:
        """Append one line for ``document`` and fsync it."""
        line = {
            "@timestamp": format_timestamp(time.time_ns() // 1_000_000),
            "reason": reason,
            "status": status,
            "document": _embed(document),
        }
        data = dumps(line) + b"\n"
        with self._lock:
            if self._fd is None:
                raise AuditError(f"the dead-letter file {self.path} is closed")
            view = memoryview(data)
            while view:  # one write; the loop only finishes a rare short write
                view = view[os.write(self._fd, view) :]
            os.fsync(self._fd)
            self._written += 1

    def read(self) -> Iterator[dict[str, Any]]:
        """Yield the lines written so far (by any process), oldest first.

        A torn last line (a crash mid-write) is skipped.
        """
        yield from read_lines(self.path)

    def close(self) -> None:
        """Close the file; later writes raise ``AuditError``."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> DeadLetterFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
