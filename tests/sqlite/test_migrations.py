"""Schema migrations: ordered steps, each in one transaction; old files upgraded in place, never lost."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

from audit_middleware.query.model import AuditQuery
from audit_middleware.query.sqlite_store import SQLiteStore
from audit_middleware.sinks.sqlite import SQLiteSink
from audit_middleware.sqlite.migrations import (
    PAGE_SIZE,
    SCHEMA_VERSION,
    STEPS,
    Migration,
    ensure_schema,
    upgrade,
)
from audit_middleware.sqlite.schema import SQLiteStoreError

V1_FILE = Path(__file__).parent / "data" / "schema-v1.sqlite3"
V2_FILE = Path(__file__).parent / "data" / "schema-v2.sqlite3"


@pytest.fixture
def v1_copy(tmp_path: Path) -> Path:
    """A copy of a store written by the version-1 code (12 records, tenants acme and globex)."""
    return Path(shutil.copy(V1_FILE, tmp_path / "old.sqlite3"))


@pytest.fixture
def v2_copy(tmp_path: Path) -> Path:
    """A copy of a store written by the version-2 code (12 records of acme and globex)."""
    return Path(shutil.copy(V2_FILE, tmp_path / "v2.sqlite3"))


def _schema(path: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT type, name, sql FROM sqlite_schema ORDER BY type, name").fetchall()
    return [(kind, name, " ".join((sql or "").split())) for kind, name, sql in rows]


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None, timeout=10)


def test_the_fixture_was_written_by_version_1():
    """The upgrade tests start from a file of schema version 1, not one rebuilt by this version."""
    with sqlite3.connect(V1_FILE) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 12
        assert not conn.execute("SELECT name FROM sqlite_schema WHERE name = 'alerts'").fetchall()


def test_a_version_1_file_is_upgraded_in_place_and_keeps_every_record(v1_copy: Path):
    """Opening a version-1 store upgrades it to the current version; every record reads as before."""
    store = SQLiteStore(v1_copy)
    try:
        with sqlite3.connect(v1_copy) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        acme = store.search(AuditQuery.build("acme", page_size=100)).events
        globex = store.search(AuditQuery.build("globex", page_size=100)).events
        assert len(acme) == len(globex) == 6
        assert store.count(AuditQuery.build("acme", search="Pod")) == 6  # the full-text index survived
    finally:
        store.close()


def test_an_upgraded_file_has_the_layout_of_a_new_one(v1_copy: Path, tmp_path: Path):
    """Upgrading step by step gives exactly the tables, indexes and triggers a new file gets."""
    SQLiteStore(v1_copy).close()
    SQLiteStore(tmp_path / "new.sqlite3").close()
    assert _schema(v1_copy) == _schema(tmp_path / "new.sqlite3")


def test_an_upgraded_file_takes_new_writes(v1_copy: Path):
    """The upgraded file stores new records beside the old ones (and ignores a replay of an old one)."""
    with SQLiteStore(v1_copy) as store:
        old = store.search(AuditQuery.build("acme", page_size=1)).events[0]
    with SQLiteSink(v1_copy) as sink:
        assert sink.write([old]) == 0
    with sqlite3.connect(v1_copy) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 12
        conn.execute("INSERT INTO maintenance (job, last_run_ms) VALUES ('probe', 1)")  # a v2 table


def test_only_the_missing_steps_run(tmp_path: Path):
    """A file at version N gets steps N+1... only: earlier ones are never run twice."""
    path = tmp_path / "a.sqlite3"
    runs: list[str] = []
    steps = [
        Migration("first", ("CREATE TABLE a (x)",), run=lambda conn: runs.append("first")),
        Migration("second", ("CREATE TABLE b (x)",), run=lambda conn: runs.append("second")),
    ]
    conn = _connect(path)
    assert upgrade(conn, path, steps[:1]) == [1]
    assert upgrade(conn, path, steps) == [2]
    assert upgrade(conn, path, steps) == []
    assert runs == ["first", "second"]
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2


def test_a_failing_step_leaves_the_file_at_its_version(tmp_path: Path):
    """A step that fails is rolled back whole: its tables are gone, the version and data unchanged."""
    path = tmp_path / "a.sqlite3"
    conn = _connect(path)
    good = Migration("good", ("CREATE TABLE kept (x)", "INSERT INTO kept VALUES (1)"))
    bad = Migration("bad", ("CREATE TABLE half (x)", "INSERT INTO nowhere VALUES (1)"))
    upgrade(conn, path, [good])
    with pytest.raises(SQLiteStoreError, match=r"schema version 2 \(bad\).*unchanged at version 1"):
        upgrade(conn, path, [good, bad])
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert conn.execute("SELECT x FROM kept").fetchall() == [(1,)]
    assert not conn.execute("SELECT name FROM sqlite_schema WHERE name = 'half'").fetchall()


def test_processes_opening_an_old_file_at_once_upgrade_it_once(v1_copy: Path):
    """Several openers race: one upgrades under BEGIN IMMEDIATE, the others wait and find it done."""
    started = threading.Barrier(4)
    seen: list[list[int]] = []
    errors: list[BaseException] = []

    def open_it() -> None:
        conn = _connect(v1_copy)
        try:
            started.wait()
            seen.append(ensure_schema(conn, v1_copy))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert sorted(seen) == [[], [], [], list(range(2, SCHEMA_VERSION + 1))]


def test_steps_are_numbered_by_position():
    """Step n (0-based) makes version n + 1; the current version is the number of steps."""
    assert SCHEMA_VERSION == len(STEPS) == 4
    assert all(step.description for step in STEPS)


def test_the_v2_fixture_was_written_by_version_2():
    """The version-3 upgrade starts from a file the version-2 code wrote (filter indexes, FTS triggers)."""
    with sqlite3.connect(V2_FILE) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_schema")}
    assert {"events_by_user_email", "events_by_action_time", "events_fts_insert"} <= names


def test_a_version_2_file_is_upgraded_in_place_and_every_filter_still_finds_its_records(v2_copy: Path):
    """After the upgrade to version 3 users, text, actions and labels find the same records as before."""
    with SQLiteStore(v2_copy) as store:
        with sqlite3.connect(v2_copy) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 12
            assert conn.execute("INSERT INTO events_fts (events_fts) VALUES ('integrity-check')")

        def count(tenant: str, **filters: str) -> int:
            return store.count(AuditQuery.build(tenant, page_size=100, **filters))

        assert count("acme") == count("globex") == 6
        assert count("acme", user="user0@example.com") == 2  # stored as User0@Example.com: NOCASE
        assert count("acme", user="100") == 2
        assert count("acme", user="support@vendor.example") == 1  # the impersonator of record 4
        assert count("acme", search="web-frontend-004") == 1
        assert count("globex", search="login f") == 3  # "Login Failed": the action label
        assert count("acme", search="login f") == 0
        assert count("globex", search="upd") == 3
        assert count("acme", search="web upd") == 0  # every word must match
        assert count("globex", search="web upd") == 3


def test_an_upgraded_version_2_file_has_the_layout_of_a_new_one(v2_copy: Path, tmp_path: Path):
    """Upgrading a version-2 file gives exactly the tables, indexes and triggers a new file gets."""
    SQLiteStore(v2_copy).close()
    SQLiteStore(tmp_path / "new.sqlite3").close()
    assert _schema(v2_copy) == _schema(tmp_path / "new.sqlite3")


def test_a_new_file_gets_the_larger_page_size_and_an_old_one_keeps_its_own(tmp_path: Path, v1_copy: Path):
    """The page size is set only while a file has no page yet: an upgraded file keeps the size it
    was written with, and every page of it stays readable."""
    with sqlite3.connect(v1_copy) as conn:
        old_size = conn.execute("PRAGMA page_size").fetchone()[0]
    assert old_size != PAGE_SIZE
    for path in (tmp_path / "new.sqlite3", v1_copy):
        SQLiteSink(path, install_signal_handlers=False).close()
    with sqlite3.connect(tmp_path / "new.sqlite3") as conn:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE
    with sqlite3.connect(v1_copy) as conn:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == old_size
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 12
