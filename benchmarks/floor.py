"""The floor: the least work any audit middleware must do, measured beside audit-middleware.

A target such as "uvicorn keeps 0.80 of its throughput" is only meaningful next to what
recording costs at its barest on the same machine. :class:`FloorWSGI` and
:class:`FloorASGI` are that bare minimum: for a request whose method changes something,
they copy the raw facts a record needs (time, method, path, client address, user
agent, status) into a dict and put it on a queue; one thread per process takes what is
queued and appends it as JSON lines (:class:`FloorJsonLines`) or inserts it into an
unindexed SQLite table (:class:`FloorSQLite`). The queue and the thread are the project's
own (``sinks.worker.BackgroundWorker``), so the floor wakes its thread as rarely as the
sinks do: a wake-up per request costs more than a record.

Nothing else: no record model, no actor or scope, no route decision, no redaction, no
hash chain, no indexes or full-text search, no back-pressure, no durability at exit
beyond ``close()``. It is a reference for the benchmarks, never a way to audit an app.
"""

from __future__ import annotations

import atexit
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from audit_middleware.sinks.worker import BackgroundWorker

__all__ = ["FloorASGI", "FloorJsonLines", "FloorSQLite", "FloorWSGI", "FloorWriter"]

_CHANGING = frozenset((b"POST", b"PUT", b"PATCH", b"DELETE", "POST", "PUT", "PATCH", "DELETE"))
Facts = dict[str, Any]


_BATCH = 1000
_LINGER = 0.02  # as audit-middleware's delivery worker: batches, not a transaction per request


class FloorWriter(BackgroundWorker[Facts]):
    """The project's own queue and thread (``sinks.worker.BackgroundWorker``: batches of up to
    1,000, lingering 20 ms to fill, woken only when it waits and a batch is due), handing
    each batch to :meth:`handle`; only what is done with a batch is the floor's."""

    def __init__(self) -> None:
        super().__init__("floor-writer", max_queue=1_000_000, batch_size=_BATCH, linger=_LINGER)
        atexit.register(self.close)

    def put(self, facts: Facts) -> None:
        """Queue one request's facts (the request thread's only step besides copying them)."""
        if not self.offer(facts):
            self.handle([facts])

    def close(self) -> None:
        """Write what is queued, stop the thread and release what the writer holds."""
        left = self.stop(None)  # the thread drains the queue; left is what it never started on
        if left:
            self.handle(left)
        self.finish()
        atexit.unregister(self.close)

    def finish(self) -> None:
        """The last batch is written and the thread has ended: release what it held."""


class FloorJsonLines(FloorWriter):
    """Appends each batch to a file as JSON lines, in one write."""

    def __init__(self, path: str | Path) -> None:
        self._file = open(path, "ab")  # noqa: SIM115 - open for the writer's life, closed by close()
        super().__init__()

    def handle(self, batch: list[Facts]) -> None:
        """Encode the batch and append it."""
        self._file.write(b"".join(orjson.dumps(facts) + b"\n" for facts in batch))
        self._file.flush()

    def finish(self) -> None:
        """Close the file."""
        self._file.close()


class FloorSQLite(FloorWriter):
    """Inserts each batch into an unindexed table (time, method, path, document) in one transaction."""

    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        self._conn: sqlite3.Connection | None = None
        super().__init__()

    def handle(self, batch: list[Facts]) -> None:
        """Insert the batch with one ``executemany``."""
        if self._conn is None:  # made on the writer thread; closed by close() once it has ended
            self._conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS floor (unix_ns INTEGER, method TEXT, path TEXT, document TEXT)"
            )
        rows = [(f["time"], f["method"], f["path"], orjson.dumps(f).decode()) for f in batch]
        self._conn.execute("BEGIN")
        self._conn.executemany("INSERT INTO floor VALUES (?, ?, ?, ?)", rows)
        self._conn.execute("COMMIT")

    def finish(self) -> None:
        """Close the database."""
        if self._conn is not None:
            self._conn.close()


class FloorWSGI:
    """The floor as WSGI middleware: raw facts of a changing request on the writer's queue."""

    def __init__(self, app: Callable[..., Iterable[bytes]], writer: FloorWriter) -> None:
        self.app = app
        self.writer = writer

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Call the app; its status is kept when it starts the response."""
        if environ.get("REQUEST_METHOD") not in _CHANGING:
            return self.app(environ, start_response)
        facts: Facts = {
            "time": time.time_ns(),
            "method": environ["REQUEST_METHOD"],
            "path": environ.get("PATH_INFO", ""),
            "client": environ.get("REMOTE_ADDR"),
            "user_agent": environ.get("HTTP_USER_AGENT"),
        }

        def recording_start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            facts["status"] = status
            self.writer.put(facts)
            return start_response(status, headers, exc_info)

        return self.app(environ, recording_start_response)


class FloorASGI:
    """The floor as ASGI middleware: raw facts of a changing request on the writer's queue."""

    def __init__(self, app: Callable[..., Any], writer: FloorWriter) -> None:
        self.app = app
        self.writer = writer

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Call the app; its status is kept when it starts the response."""
        if scope["type"] != "http" or scope.get("method") not in _CHANGING:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        client = scope.get("client")
        facts: Facts = {
            "time": time.time_ns(),
            "method": scope["method"],
            "path": scope.get("path", ""),
            "client": client[0] if client else None,
            "user_agent": headers.get(b"user-agent", b"").decode("latin-1"),
        }

        async def recording_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                facts["status"] = message["status"]
                self.writer.put(facts)
            await send(message)

        await self.app(scope, receive, recording_send)
