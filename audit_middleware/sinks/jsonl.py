"""A JSON-lines sink: one ECS document per line, to a file or a stream such as stdout; and
reading such files back (``read_lines``), which the dead-letter and last-resort files share."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from audit_middleware.model.encoding import dumps, loads
from audit_middleware.sinks.base import Sink, Unwritten, hold, release

if TYPE_CHECKING:
    from audit_middleware.model.event import AuditEvent


def read_lines(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSON-lines file, oldest first; a file that is gone gives none.

    A torn last line (a crash mid-write) ends the file; a line that is not a JSON object
    is skipped, so one damaged line never hides the rest.
    """
    try:
        stream = path.open("rb")
    except OSError:
        return
    with stream:
        for raw in stream:
            if not raw.endswith(b"\n"):
                return
            try:
                entry = loads(raw)
            except ValueError:
                continue
            if isinstance(entry, dict):
                yield entry


class JsonLinesSink(Sink):
    """Appends each event as one JSON line.

    With a path the file is opened in append mode (safe to share between worker
    processes: each ``write`` holds whole lines, under ``O_APPEND``; the delivery worker
    writes the lines of a batch in one, when the batch ends).
    ``fsync=True`` makes every record durable before ``emit`` returns.

    >>> import io; stream = io.StringIO(); sink = JsonLinesSink(stream=stream)
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        stream: IO[str] | None = None,
        fsync: bool = False,
    ) -> None:
        if (path is None) == (stream is None):
            raise ValueError("give exactly one of path or stream")
        self._lock = threading.Lock()
        self._fsync = fsync
        self._fd: int | None = None
        self._stream = stream
        self.path = None if path is None else Path(path)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = self._open(self.path)

    @staticmethod
    def _open(path: Path) -> int:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    @classmethod
    def stdout(cls) -> JsonLinesSink:
        """A sink writing to standard output (for containers that ship stdout)."""
        return cls(stream=sys.stdout)

    def emit(self, event: AuditEvent) -> None:
        """Write the event as one line (after ``close()`` too: a late record is still appended)."""
        line = dumps(event.to_document()) + b"\n"
        if self._fd is not None and not self._fsync and hold(self, (event, line), self._write_held):
            return  # the delivery worker's batch: written when it ends, in one write
        with self._lock:
            if self._fd is not None:
                self._append(self._fd, line)
            elif self.path is not None:
                self._append_closed(line)
            elif self._stream is not None:
                self._stream.write(line.decode("utf-8"))

    def _append_closed(self, lines: bytes) -> None:
        # closed, and a record still arrives (another thread, at shutdown): keep it
        assert self.path is not None
        fd = self._open(self.path)
        try:
            self._append(fd, lines)
        finally:
            os.close(fd)

    def _write_held(self, held: list[tuple[AuditEvent, bytes]]) -> Unwritten | None:
        lines = b"".join(line for _, line in held)
        try:
            with self._lock:
                if self._fd is not None:
                    self._append(self._fd, lines)
                else:
                    self._append_closed(lines)
        except OSError as exc:  # a full disk: the last resort keeps them, as for a failed emit
            return [event for event, _ in held], exc
        return None

    def _append(self, fd: int, lines: bytes) -> None:
        view = memoryview(lines)
        while view:  # a regular file takes it all at once, unless a signal or a full disk cuts it
            view = view[os.write(fd, view) :]
        if self._fsync:
            os.fsync(fd)

    def flush(self, timeout: float | None = None) -> bool:  # noqa: ARG002 - a local write is quick
        """Flush the stream or fsync the file."""
        held = release(self)  # flushed from the delivery worker itself, mid-batch
        unwritten = self._write_held(held) if held else None
        if unwritten is not None:
            for item in held:  # held again, for the batch's end to hand to the last resort
                hold(self, item, self._write_held)
            raise unwritten[1]
        with self._lock:
            if self._fd is not None:
                os.fsync(self._fd)
            elif self._stream is not None:
                self._stream.flush()
        return True

    def close(self, timeout: float | None = None) -> None:
        """Flush and close the file (a stream is left open: it is the caller's)."""
        self.flush(timeout)
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
