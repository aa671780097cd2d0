"""Connections to one SQLite audit file, shared by the threads of a process.

Each thread borrows a connection of its own (a ``sqlite3.Connection`` must not be used
by two threads at once) from a small pool; a forked child starts with an empty pool,
since a connection does not survive ``fork()``.

Opening a new file races with the other processes that open it (``uvicorn --workers``,
gunicorn): switching on WAL needs the file to itself and SQLite may answer "database is
locked" at once instead of calling the busy handler. So creating the schema waits and
retries like any other lock, for ``busy_timeout`` and at least :data:`OPEN_WAIT`
seconds. A writer that still finds the file busy after that does not fail
(``defer_when_busy``): the schema is made ready by its first write, which waits again.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from audit_middleware.sqlite.migrations import ensure_schema
from audit_middleware.sqlite.schema import SQLiteStoreError

__all__ = ["OPEN_WAIT", "ConnectionPool", "is_busy"]

_IDLE_CONNECTIONS = 4
OPEN_WAIT = 10.0
"""Seconds a new store waits at least for the others opening it at the same moment."""
_BUSY_CODES = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED


def is_busy(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` is SQLite saying the file is locked by someone else (worth retrying)."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in _BUSY_CODES
    message = str(exc).lower()
    return "locked" in message or "busy" in message


class ConnectionPool:
    """Connections to the audit store at ``path``, which is created (schema included) if new.

    ``busy_timeout`` is how long a statement waits for another writer's lock;
    ``synchronous`` is SQLite's ``FULL`` (every transaction synced to disk) or ``NORMAL``
    (survives a crash of the process, not of the machine); ``defer_when_busy`` lets a
    store that stays locked while it is created open anyway (see the module docstring).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float,
        synchronous: str,
        defer_when_busy: bool = False,
    ) -> None:
        if str(path) == ":memory:" or str(path).startswith("file:"):
            raise SQLiteStoreError("the audit store needs a file path: every thread opens its own connection")
        self.path = Path(path)
        self._busy_ms = int(busy_timeout * 1000)
        self._synchronous = synchronous
        self._ready = False
        self._reset()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # a writer built inside a request does not wait long: its first write waits instead
            self._ensure_schema(min(busy_timeout, 1.0) if defer_when_busy else max(busy_timeout, OPEN_WAIT))
        except sqlite3.OperationalError as exc:
            if not (defer_when_busy and is_busy(exc)):
                self.close()
                raise SQLiteStoreError(f"cannot open the audit store {str(self.path)!r}: {exc}") from exc
        except (sqlite3.Error, SQLiteStoreError) as exc:
            self.close()
            if isinstance(exc, SQLiteStoreError):
                raise
            raise SQLiteStoreError(f"cannot open the audit store {str(self.path)!r}: {exc}") from exc

    def _ensure_schema(self, wait: float) -> None:
        """Create or check the schema, retrying while other processes hold the file (up to ``wait`` s)."""
        deadline = time.monotonic() + wait
        pause = 0.01
        while True:
            try:
                with self._connection() as conn:
                    ensure_schema(conn, self.path)
            except sqlite3.OperationalError as exc:
                if not is_busy(exc) or time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause * random.uniform(0.5, 1.5))  # noqa: S311 - jitter, not cryptography
                pause = min(pause * 2, 0.25)
                continue
            self._ready = True
            return

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []

    def connect(self) -> sqlite3.Connection:
        """A new connection with the store's settings (the caller closes it)."""
        conn = sqlite3.connect(
            self.path, timeout=self._busy_ms / 1000, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        conn.execute("PRAGMA temp_store = MEMORY")  # trigger statement journals: no temp files
        return conn

    @contextmanager
    def borrow(self) -> Iterator[sqlite3.Connection]:
        """A connection for this thread, returned to the pool afterwards (rolled back if need be).

        The first borrow of a store opened while busy makes the schema ready (waiting
        again); if the file is still busy it raises ``sqlite3.OperationalError`` as any
        locked statement does.
        """
        if not self._ready:
            self._ensure_schema(max(self._busy_ms / 1000, OPEN_WAIT))
        with self._connection() as conn:
            yield conn

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        if self._pid != os.getpid():
            self._reset()  # the parent's connections are not ours to use or close
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self.connect()
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.rollback()
            with self._lock:
                keep = len(self._idle) < _IDLE_CONNECTIONS
                if keep:
                    self._idle.append(conn)
            if not keep:
                conn.close()

    def close(self, *, optimize: bool = False) -> None:
        """Close the idle connections; ``optimize`` first lets SQLite refresh its statistics."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            if optimize:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA optimize")
            conn.close()
