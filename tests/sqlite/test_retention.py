"""Retention on the embedded store: per-tier limits, gzip NDJSON archives first, and restoring them."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from audit_middleware import Actor, Resource, Scope
from audit_middleware.errors import AuditValidationError
from audit_middleware.model.actions import CATALOG
from audit_middleware.model.event import AuditEvent
from audit_middleware.model.ids import uuid7
from audit_middleware.model.tenancy import scope_key
from audit_middleware.query.model import AuditQuery
from audit_middleware.query.sqlite_store import SQLiteStore
from audit_middleware.sinks.sqlite import SQLiteSink
from audit_middleware.sqlite import retention
from audit_middleware.sqlite.retention import SQLiteRetention, apply_retention, list_archives, restore_archive

NOW = 1_800_000_000_000
DAY = 86_400_000


def event(tenant: str | None, days_old: float) -> AuditEvent:
    at = NOW - int(days_old * DAY)
    return AuditEvent(
        id=uuid7(at),
        unix_ms=at,
        action=CATALOG.get("update"),
        actor=Actor(email="ann@example.com"),
        resource=Resource("pod", f"p-{days_old}", "web"),
        tenant=Scope(tenant) if tenant else None,
    )


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A store holding, per tenant (acme, bigcorp, none), records 10, 100 and 400 days old."""
    path = tmp_path / "audit.sqlite3"
    with SQLiteSink(path) as sink:
        sink.write([event(tenant, age) for tenant in ("acme", "bigcorp", None) for age in (10, 100, 400)])
    return path


def _conn(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def _ages(path: Path) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for tenant, unix_ms in _conn(path).execute("SELECT tenant, unix_ms FROM events ORDER BY unix_ms DESC"):
        found.setdefault(tenant, []).append(round((NOW - unix_ms) / DAY))
    return found


def test_each_tenant_keeps_its_tier_and_the_rest_is_archived_then_deleted(store: Path):
    """standard keeps 90 days, bigcorp (extended) 365; older records go to one gzip file per tier."""
    policy = SQLiteRetention(tenant_tiers={"bigcorp": "extended"})
    report = apply_retention(_conn(store), store, policy, now_ms=NOW)
    assert _ages(store) == {"acme": [10], "bigcorp": [10, 100], "-": [10]}
    assert (report.deleted, report.archived) == (5, 5)
    assert report.by_tier == {"standard": 4, "extended": 1}
    assert sorted(path.parent.name for path in report.files) == ["extended", "standard"]
    archived = [json.loads(text) for path in report.files for text, _ in retention.read_archive(path)]
    assert len(archived) == 5
    assert {doc.get("organization", {}).get("id") for doc in archived} == {"acme", "bigcorp", None}


def test_archives_are_recorded_with_counts_range_and_checksum(store: Path):
    """The archives table lists each file with its record count, time range and SHA-256."""
    report = apply_retention(_conn(store), store, SQLiteRetention(), now_ms=NOW)
    files = list_archives(_conn(store))
    assert [f.path for f in files] == report.files
    (standard,) = files
    assert (standard.tier, standard.records, standard.complete) == ("standard", 6, True)
    assert standard.first_ms == NOW - 400 * DAY
    assert standard.last_ms == NOW - 100 * DAY
    assert standard.sha256 == hashlib.sha256(standard.path.read_bytes()).hexdigest()
    assert standard.path.parent.parent == store.with_name(store.name + ".archive")


def test_a_second_run_has_nothing_to_do(store: Path):
    """Retention is idempotent: run again at once, it deletes and writes nothing."""
    apply_retention(_conn(store), store, SQLiteRetention(), now_ms=NOW)
    again = apply_retention(_conn(store), store, SQLiteRetention(), now_ms=NOW)
    assert (again.deleted, again.files) == (0, [])


def test_a_tier_callback_decides_per_tenant(store: Path):
    """tier_of gets the tenant id (None for records without one) and may return None (default tier)."""
    asked: list[str | None] = []

    def tier_of(tenant: str | None) -> str | None:
        asked.append(tenant)
        return "extended" if tenant is None else None

    apply_retention(_conn(store), store, SQLiteRetention(tier_of=tier_of), now_ms=NOW)
    assert sorted(asked, key=str) == sorted(["acme", "bigcorp", None], key=str)
    assert _ages(store) == {"acme": [10], "bigcorp": [10], "-": [10, 100]}


def test_tenants_stored_by_a_hashed_key_get_their_own_tier(tmp_path: Path):
    """An over-long tenant id and a tenant named '-' are stored hashed; their tier is still looked up by
    the id the app knows, and the tenant '-' is not taken for the records without a tenant."""
    long_tenant = "bigcorp-" + "x" * 1100
    path = tmp_path / "audit.sqlite3"
    with SQLiteSink(path) as sink:
        sink.write([event(tenant, age) for tenant in (long_tenant, "-", None) for age in (10, 100, 400)])
    asked: list[str | None] = []

    def tier_of(tenant: str | None) -> str | None:
        asked.append(tenant)
        return "extended" if tenant == "-" else None

    by_map = SQLiteRetention(tenant_tiers={long_tenant: "extended"})
    assert apply_retention(_conn(path), path, by_map, now_ms=NOW).by_tier == {"standard": 4, "extended": 1}
    assert _ages(path) == {scope_key(long_tenant): [10, 100], scope_key("-"): [10], "-": [10]}
    report = apply_retention(_conn(path), path, SQLiteRetention(tier_of=tier_of), now_ms=NOW)
    assert sorted(asked, key=str) == sorted([long_tenant, "-", None], key=str)
    assert report.by_tier == {"standard": 1}
    assert _ages(path) == {scope_key(long_tenant): [10], scope_key("-"): [10], "-": [10]}


def test_without_archiving_records_are_only_deleted(store: Path, tmp_path: Path):
    """archive=False deletes and writes no file."""
    report = apply_retention(_conn(store), store, SQLiteRetention(archive=False), now_ms=NOW)
    assert report.deleted == 6
    assert report.files == []
    assert list_archives(_conn(store)) == []


def test_a_restored_archive_is_searchable_byte_for_byte(store: Path, tmp_path: Path):
    """restore_archive loads an archive into another store: the same documents, searchable there;
    loading it twice adds nothing."""
    before = {row[0]: row[1] for row in _conn(store).execute("SELECT event_id, document FROM events")}
    (path,) = apply_retention(_conn(store), store, SQLiteRetention(), now_ms=NOW).files
    restored = tmp_path / "restored.sqlite3"
    SQLiteStore(restored).close()
    report = restore_archive(_conn(restored), path)
    assert (report.read, report.inserted, report.damaged) == (6, 6, None)
    assert restore_archive(_conn(restored), path).inserted == 0
    rows = dict(_conn(restored).execute("SELECT event_id, document FROM events").fetchall())
    assert all(rows[event_id] == before[event_id] for event_id in rows)
    with SQLiteStore(restored) as reader:
        assert reader.count(AuditQuery.build("acme", search="web")) == 2


def test_an_archive_cut_short_restores_what_it_holds(store: Path, tmp_path: Path):
    """A file a crash left without its gzip trailer is read up to the damage, which is reported."""
    (path,) = apply_retention(_conn(store), store, SQLiteRetention(), now_ms=NOW).files
    data = path.read_bytes()
    cut = tmp_path / "cut.ndjson.gz"
    cut.write_bytes(data[:-8])  # the trailer (CRC and size) is gone
    target = tmp_path / "target.sqlite3"
    SQLiteStore(target).close()
    report = restore_archive(_conn(target), cut)
    assert report.read == report.inserted == 6
    assert report.damaged is not None


def test_a_crash_between_archive_and_delete_loses_nothing(store: Path, monkeypatch: pytest.MonkeyPatch):
    """If deleting fails after the archive was written, the records are still in the store, and the
    next run archives them again (restoring both files still gives each record once)."""
    real = retention.transaction
    calls = {"n": 0}

    def failing(conn: sqlite3.Connection):  # the second transaction is the first delete
        calls["n"] += 1
        if calls["n"] == 2:
            raise sqlite3.OperationalError("disk I/O error")
        return real(conn)

    monkeypatch.setattr(retention, "transaction", failing)
    with pytest.raises(sqlite3.OperationalError):
        apply_retention(_conn(store), store, SQLiteRetention(), now_ms=NOW)
    monkeypatch.setattr(retention, "transaction", real)
    assert sum(len(v) for v in _ages(store).values()) == 9
    second = apply_retention(_conn(store), store, SQLiteRetention(), now_ms=NOW)
    assert second.deleted == 6
    target = store.with_name("both.sqlite3")
    SQLiteStore(target).close()
    files = [archive.path for archive in list_archives(_conn(store))]
    assert len(files) == 2
    assert sum(restore_archive(_conn(target), path).inserted for path in files) == 6


def test_timedelta_tiers_act_in_seconds(store: Path):
    """A tier may keep records for a timedelta (tests that watch retention act quickly)."""
    policy = SQLiteRetention(tiers={"standard": timedelta(days=50)})
    apply_retention(_conn(store), store, policy, now_ms=NOW)
    assert _ages(store) == {"acme": [10], "bigcorp": [10], "-": [10]}


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"tiers": {}}, id="no-tiers"),
        pytest.param({"tiers": {"standard": 0}}, id="zero-days"),
        pytest.param({"tenant_tiers": {"acme": "gold"}}, id="unknown-tier"),
        pytest.param({"default_tier": "gold"}, id="unknown-default"),
        pytest.param({"tenant_tiers": {"a": "extended"}, "tier_of": lambda t: None}, id="both"),
        pytest.param({"interval": 0}, id="interval"),
    ],
)
def test_bad_retention_settings_are_refused(kwargs):
    """Settings that cannot mean anything are refused when made."""
    with pytest.raises(AuditValidationError):
        SQLiteRetention(**kwargs)
