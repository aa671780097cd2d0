"""The one last resort for records a sink could not store: a private local file, replayed later.

When the SQLite store's disk is locked or full, or the OpenSearch spool cannot be
written, records are not written to a log stream (that would lose them for search and
put personal data into log pipelines): :meth:`LastResort.keep` appends them, as their
documents, to a private file (``0600`` in a ``0700`` directory) and the sink replays
them into the store once it works again (:meth:`LastResort.replay`), by the same
process or by the next one to start. Records written twice (kept, then stored after
all) are harmless: both stores ignore a replayed event id.

Layout: one directory per destination (``sqlite-<hash>``, ``opensearch-<hash>``) below
the fallback directory (``AUDIT_FALLBACK_DIR``, else ``<state dir>/undelivered``; put it
on another file system than the store to survive a full disk), and in it one file per
process, ``<host>-<pid>-<unix ms>-<random>.jsonl``, each line
``{"document": {...}, "error": "..."}``. A process holds ``flock`` on its own file while
it lives; a file that can be locked belongs to a dead process and is adopted by
whichever process replays first, then deleted. Retention: a file lives until its records
are replayed; nothing is deleted unreplayed.

If even the file cannot be written, records are held in memory (up to ``hold_limit``)
and written with the next attempt; only beyond that, or when the process ends with the
file still unwritable, are they lost, and counted. There is one warning per process
when records first go to the file, and one when any is held or lost; warnings carry
counts and paths, never record content.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from audit_middleware import env, logs
from audit_middleware.errors import SinkSetupError
from audit_middleware.model.encoding import dumps
from audit_middleware.model.event import AuditEvent
from audit_middleware.sinks.base import Sink
from audit_middleware.sinks.jsonl import read_lines
from audit_middleware.sinks.private import FILE_MODE, private_directory
from audit_middleware.sinks.worker import after_fork_in_child

__all__ = ["LastResort", "LastResortSink", "LastResortStats", "destination_directory", "shared", "waiting"]

_FILE_NAME: Final = re.compile(r".+-\d+-\d+-[0-9a-f]+\.jsonl")
_SCAN_EVERY: Final = 30.0  # seconds between looks for files of other processes
_ERROR_CHARS: Final = 300


@dataclass(frozen=True)
class LastResortStats:
    """What the last resort did in this process."""

    kept: int
    """Records written to the private file."""
    replayed: int
    """Records read back from files (this process's or dead ones') and stored."""
    held: int
    """Records waiting in memory because the file could not be written either."""
    lost: int
    """Records that could be kept nowhere (beyond ``hold_limit``, or at exit)."""


def destination_directory(kind: str, identity: str, environ: dict[str, str] | None = None) -> Path:
    """The last-resort directory of one destination, e.g. ``<fallback>/sqlite-3f2a...``.

    >>> destination_directory("sqlite", "/srv/audit.sqlite3", {"AUDIT_FALLBACK_DIR": "/x"}).name
    'sqlite-71b1f14053e75ecb'
    """
    digest = hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return env.fallback_dir(environ) / f"{kind}-{digest}"


class LastResort:
    """A private, replayable file of records no sink could store (see the module docstring).

    >>> import tempfile, pathlib
    >>> last = LastResort(pathlib.Path(tempfile.mkdtemp()) / "sqlite-test", name="the test store")
    >>> last.stats().kept
    0
    """

    def __init__(self, directory: Path, *, name: str, hold_limit: int = 10_000) -> None:
        self.directory = directory
        self.name = name
        self._hold_limit = hold_limit
        self._start_fresh()
        after_fork_in_child(self._after_fork)

    def _start_fresh(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._path: Path | None = None
        self._held: deque[bytes] = deque()
        self._kept = self._replayed = self._lost = 0
        self._own_lines = 0  # lines in this process's file not yet replayed
        self._next_scan = 0.0  # look for other processes' files at the first chance
        self._warned_kept = self._warned_held = self._warned_replay = False

    def _after_fork(self) -> None:
        if self._pid == os.getpid():
            return
        if self._fd is not None:
            # close only: unlocking would release the parent's lock (the same open file)
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._start_fresh()

    # -- keeping ------------------------------------------------------------------------

    def keep(self, events: Iterable[AuditEvent], error: BaseException) -> None:
        """Write ``events`` to this process's private file (or hold them); never raises."""
        documents = [document for document in map(self._encoded, events) if document is not None]
        self.keep_documents(documents, error)

    def _encoded(self, event: AuditEvent) -> bytes | None:
        try:
            return dumps(event.to_document())
        except Exception:  # noqa: BLE001 - an event that cannot even encode is counted lost
            self._lost += 1
            return None

    def keep_documents(self, documents: Iterable[bytes], error: BaseException) -> None:
        """``keep`` for documents already encoded as JSON (the spool's items); never raises."""
        self._after_fork()
        reason = dumps(f"{type(error).__name__}: {error}"[:_ERROR_CHARS])
        lines = [b'{"document":' + document + b',"error":' + reason + b"}\n" for document in documents]
        if not lines:
            return
        with self._lock:
            self._held.extend(lines)
            written = self._write_held()
            overflow = len(self._held) - self._hold_limit
            for _ in range(max(overflow, 0)):
                self._held.popleft()
                self._lost += 1
        if written:
            self._warn_kept(reason.decode("utf-8"))
        if self._held or self._lost:
            self._warn_held()

    def _write_held(self) -> int:
        """Append what is held to the file (lock held); the count written, 0 on failure."""
        if not self._held:
            return 0
        try:
            fd = self._open()
            data = b"".join(self._held)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            return 0
        count = len(self._held)
        self._held.clear()
        self._kept += count
        self._own_lines += count
        return count

    def _open(self) -> int:
        if self._fd is not None:
            return self._fd
        private_directory(self.directory, tighten=True)
        name = f"{_hostname()}-{os.getpid()}-{time.time_ns() // 1_000_000}-{secrets.token_hex(4)}.jsonl"
        path = self.directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, FILE_MODE)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours while we live
        self._fd, self._path = fd, path
        return fd

    # -- replaying ----------------------------------------------------------------------

    def pending(self) -> bool:
        """Whether anything may wait to be replayed (cheap: other files are looked for now and then)."""
        self._after_fork()
        if self._own_lines or self._held:
            return True
        now = time.monotonic()
        if now < self._next_scan:
            return False
        self._next_scan = now + _SCAN_EVERY
        return any(True for _ in self._foreign_files())

    def replay(self, store: Callable[[list[AuditEvent]], object], *, batch_size: int = 1000) -> int:
        """Store what this process and dead ones kept, with ``store(events)``; return how many.

        ``store`` raises when the destination still fails: replay then stops, and what
        is not stored stays for the next time. Never raises itself.
        """
        self._after_fork()
        replayed = 0
        try:
            with self._lock:
                if self._write_held() == 0 and self._held:
                    return 0  # the file is still unwritable: the store is likely not better
                if self._own_lines and self._path is not None and self._fd is not None:
                    replayed += self._replay_file(self._path, store, batch_size)
                    os.ftruncate(self._fd, 0)
                    self._own_lines = 0
            for path in self._foreign_files():
                replayed += self._adopt(path, store, batch_size)
        except Exception as exc:  # noqa: BLE001 - the store still fails: try again later
            if not self._warned_replay:
                self._warned_replay = True
                logs.warn(f"audit records kept for {self.name} cannot be replayed yet", error=str(exc)[:200])
        self._replayed += replayed
        return replayed

    def _foreign_files(self) -> Iterable[Path]:
        try:
            entries = list(os.scandir(self.directory))
        except OSError:
            return
        for entry in entries:
            if _FILE_NAME.fullmatch(entry.name) and (self._path is None or entry.name != self._path.name):
                yield Path(entry.path)

    def _adopt(self, path: Path, store: Callable[[list[AuditEvent]], object], batch_size: int) -> int:
        """Replay and delete the file of a dead process (its lock is free); 0 if it lives."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return 0
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return 0  # its process is alive
            if os.fstat(fd).st_nlink == 0:
                return 0  # another process replayed and deleted it meanwhile
            count = self._replay_file(path, store, batch_size)
            path.unlink(missing_ok=True)
            return count
        finally:
            os.close(fd)

    @staticmethod
    def _replay_file(path: Path, store: Callable[[list[AuditEvent]], object], batch_size: int) -> int:
        events: list[AuditEvent] = []
        total = 0
        for event in _read(path):
            events.append(event)
            if len(events) >= batch_size:
                store(events)
                total += len(events)
                events = []
        if events:
            store(events)
            total += len(events)
        return total

    # -- state --------------------------------------------------------------------------

    def stats(self) -> LastResortStats:
        """Counters of this process."""
        return LastResortStats(self._kept, self._replayed, len(self._held), self._lost)

    def close(self) -> None:
        """A last try to write what is held; what cannot be written is counted lost and warned."""
        self._after_fork()
        with self._lock:
            self._write_held()
            lost = len(self._held)
            self._held.clear()
            self._lost += lost
            if self._fd is not None:
                os.close(self._fd)  # releases the lock: a later process adopts the file
                self._fd = None
            if self._path is not None and self._own_lines == 0:
                self._path.unlink(missing_ok=True)
        if lost:
            logs.warn(
                f"{lost} audit records for {self.name} could not be kept anywhere and are lost",
                directory=str(self.directory),
            )

    def _warn_kept(self, reason: str) -> None:
        if not self._warned_kept:
            self._warned_kept = True
            logs.warn(
                f"audit records could not be stored in {self.name}; they are kept in a private file "
                "and replayed when it works again",
                file=str(self._path),
                error=reason,
            )

    def _warn_held(self) -> None:
        if not self._warned_held:
            self._warned_held = True
            logs.warn(
                f"audit records for {self.name} could not be written to the fallback directory either; "
                f"holding up to {self._hold_limit} in memory",
                directory=str(self.directory),
                held=len(self._held),
                lost=self._lost,
            )


def waiting(directory: Path) -> int:
    """How many records wait in a last-resort directory, by any process (read-only, for ``status``)."""
    total = 0
    for path in directory.glob("*.jsonl") if directory.is_dir() else ():
        with contextlib.suppress(OSError), path.open("rb") as stream:
            total += sum(1 for line in stream if line.endswith(b"\n"))
    return total


def _read(path: Path) -> Iterator[AuditEvent]:
    """The events of a last-resort file; a torn or damaged line is skipped."""
    for line in read_lines(path):
        event = _event_of(line)
        if event is not None:
            yield event


def _event_of(line: dict[str, Any]) -> AuditEvent | None:
    try:
        return AuditEvent.from_document(line["document"])
    except Exception:  # noqa: BLE001 - one damaged line must not block the rest
        return None


def _hostname() -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())[:64] or "host"


_shared_lock = threading.Lock()
_shared: dict[Path, LastResort] = {}


def shared() -> LastResort:
    """The last resort of records a sink raised on (``sinks.delivery``): ``<fallback>/other``.

    Nothing replays these automatically (the sink is not known there); the warning names
    the file. One per fallback directory (the environment may change it).
    """
    directory = env.fallback_dir() / "other"
    with _shared_lock:
        found = _shared.get(directory)
        if found is None:
            found = _shared[directory] = LastResort(directory, name="a sink that raised")
        return found


class LastResortSink(Sink):
    """A sink that only keeps records in a last-resort directory: the default when no store opens.

    They are replayed by a store whose fallback directory this is, or read by an operator.
    """

    def __init__(self, directory: Path) -> None:
        self.last_resort = LastResort(directory, name="no store (none could be opened)")

    def emit(self, event: AuditEvent) -> None:
        """Keep ``event`` in the private file (or memory)."""
        self.last_resort.keep([event], SinkSetupError("no audit store could be opened"))

    def close(self, timeout: float | None = None) -> None:  # noqa: ARG002 - nothing to wait for
        """Write what is held, and count what cannot be."""
        self.last_resort.close()
