"""Connections to one SQLite audit file, shared by the threads of a process.

Each thread borrows a connection of its own (a ``sqlite3.Connection`` must not be used
by two threads at once) from a small pool; a forked child starts with an empty pool,
since a connection does not survive ``fork()``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from audit_middleware.sqlite.migrations import ensure_schema
from audit_middleware.sqlite.schema import SQLiteStoreError

__all__ = ["ConnectionPool"]

_IDLE_CONNECTIONS = 4


class ConnectionPool:
    """Connections to the audit store at ``path``, which is created (schema included) if new.

    ``busy_timeout`` is how long a statement waits for another writer's lock;
    ``synchronous`` is SQLite's ``FULL`` (every transaction synced to disk) or ``NORMAL``
    (survives a crash of the process, not of the machine).
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float, synchronous: str) -> None:
        if str(path) == ":memory:" or str(path).startswith("file:"):
            raise SQLiteStoreError("the audit store needs a file path: every thread opens its own connection")
        self.path = Path(path)
        self._busy_ms = int(busy_timeout * 1000)
        self._synchronous = synchronous
        self._reset()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self.borrow() as conn:
                ensure_schema(conn, self.path)
        except (sqlite3.Error, SQLiteStoreError) as exc:
            self.close()
            if isinstance(exc, SQLiteStoreError):
                raise
            raise SQLiteStoreError(f"cannot open the audit store {str(self.path)!r}: {exc}") from exc

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
        """A connection for this thread, returned to the pool afterwards (rolled back if need be)."""
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
