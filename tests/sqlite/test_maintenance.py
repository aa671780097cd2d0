"""Leases on periodic jobs: one worker of many runs a job when it is due; a dead holder only delays it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from audit_middleware.sinks.sqlite import SQLiteSink
from audit_middleware.sqlite.maintenance import claim, finish


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    """An autocommit connection to a new store."""
    SQLiteSink(tmp_path / "a.sqlite3").close()
    return sqlite3.connect(tmp_path / "a.sqlite3", isolation_level=None)


def test_a_job_is_claimed_once_until_it_finishes(conn):
    """While one worker holds the lease, the others are refused; after it finished, not due yet."""
    assert claim(conn, "retention", now_ms=1000, every_ms=60_000, lease_ms=10_000)
    assert not claim(conn, "retention", now_ms=1001, every_ms=60_000, lease_ms=10_000)
    finish(conn, "retention", now_ms=2000)
    assert not claim(conn, "retention", now_ms=30_000, every_ms=60_000, lease_ms=10_000)
    assert claim(conn, "retention", now_ms=62_001, every_ms=60_000, lease_ms=10_000)


def test_a_lease_of_a_dead_worker_expires(conn):
    """A holder that never finished (killed) blocks the job only until its lease runs out."""
    assert claim(conn, "alerts", now_ms=0, every_ms=1000, lease_ms=5000)
    assert not claim(conn, "alerts", now_ms=4999, every_ms=1000, lease_ms=5000)
    assert claim(conn, "alerts", now_ms=5001, every_ms=1000, lease_ms=5000)


def test_jobs_are_independent(conn):
    """Holding one job does not block another."""
    assert claim(conn, "alerts", now_ms=0, every_ms=1000, lease_ms=5000)
    assert claim(conn, "retention", now_ms=0, every_ms=1000, lease_ms=5000)
