"""Periodic jobs on a shared audit file, run by one worker of many: a lease in ``maintenance``.

Every writer process (gunicorn workers, say) offers to run the file's periodic jobs
(retention, alert evaluation). ``claim`` lets one of them run a job when it is due and
nobody holds it: under ``BEGIN IMMEDIATE`` it checks the last run and the lease, and
takes the lease for ``lease_ms``. A worker that dies while holding it only delays the
next run until the lease expires.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["claim", "finish", "transaction"]


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` on an autocommit connection; rolled back on error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _holder() -> str:
    # who holds a lease, for people reading the table; the pid at call time (forked workers)
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def claim(conn: sqlite3.Connection, job: str, *, now_ms: int, every_ms: int, lease_ms: int) -> bool:
    """Take ``job``'s lease if it is due (last run ``every_ms`` ago) and free; ``conn`` autocommits."""
    with transaction(conn):
        row = conn.execute(
            "SELECT lease_until_ms, last_run_ms FROM maintenance WHERE job = ?", (job,)
        ).fetchone()
        if row is not None:
            lease_until, last_run = row
            if last_run is not None and now_ms - int(last_run) < every_ms:
                return False
            if lease_until is not None and int(lease_until) > now_ms:
                return False
        conn.execute(
            "INSERT INTO maintenance (job, holder, lease_until_ms) VALUES (?, ?, ?) "
            "ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, "
            "lease_until_ms = excluded.lease_until_ms",
            (job, _holder(), now_ms + lease_ms),
        )
    return True


def finish(conn: sqlite3.Connection, job: str, *, now_ms: int) -> None:
    """Release ``job``'s lease and record the run."""
    with transaction(conn):
        conn.execute(
            "UPDATE maintenance SET holder = NULL, lease_until_ms = NULL, last_run_ms = ? WHERE job = ?",
            (now_ms, job),
        )
