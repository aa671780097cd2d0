"""`retention apply` and `archive list/restore` on the SQLite store, through the command line."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from audit_middleware import Actor, Resource, Scope
from audit_middleware.cli import main
from audit_middleware.model.actions import CATALOG
from audit_middleware.model.event import AuditEvent
from audit_middleware.model.ids import uuid7
from audit_middleware.query.model import AuditQuery
from audit_middleware.query.sqlite_store import SQLiteStore
from audit_middleware.sinks.sqlite import SQLiteSink

DAY = 86_400_000


def _event(tenant: str, days_old: int) -> AuditEvent:
    at = time.time_ns() // 1_000_000 - days_old * DAY
    return AuditEvent(
        id=uuid7(at),
        unix_ms=at,
        action=CATALOG.get("delete"),
        actor=Actor(email="a@b.example"),
        resource=Resource("pod", "p1", "web"),
        tenant=Scope(tenant),
    )


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A store with records of acme and bigcorp, 10, 100 and 400 days old."""
    path = tmp_path / "audit.sqlite3"
    with SQLiteSink(path) as sink:
        sink.write([_event(tenant, age) for tenant in ("acme", "bigcorp") for age in (10, 100, 400)])
    return path


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_retention_apply_archives_per_tier_and_lists_the_files(store: Path):
    """`retention apply` keeps each tenant's tier and prints the counts and archive files."""
    result = run("retention", "apply", "--store", f"sqlite:{store}", "--tier", "extended=365",
                 "--tenant-tier", "bigcorp=extended")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "standard: 2 records archived and deleted" in result.output
    assert "extended: 1 records archived and deleted" in result.output
    assert result.output.count("archive: ") == 2
    listed = json.loads(run("archive", "list", "--store", f"sqlite:{store}", "--json").output)
    assert sorted((row["tier"], row["records"], row["state"]) for row in listed) == [
        ("extended", 1, "complete"),
        ("standard", 2, "complete"),
    ]


def test_archive_restore_loads_a_file_into_a_store(store: Path, tmp_path: Path):
    """`archive restore FILE --into PATH` makes the archived records searchable there."""
    run("retention", "apply", "--store", f"sqlite:{store}")
    listed = json.loads(run("archive", "list", "--store", f"sqlite:{store}", "--json").output)
    (standard,) = [row for row in listed if row["tier"] == "standard"]
    into = tmp_path / "restored.sqlite3"
    result = run("archive", "restore", standard["archive"], "--into", str(into))
    assert result.exit_code == 0, result.output
    assert f"restored 4 of 4 records into {into}" in result.output
    with SQLiteStore(into) as restored:
        assert restored.count(AuditQuery.build("acme")) == 2


def test_restore_needs_a_target_and_an_existing_file(store: Path, tmp_path: Path):
    """Without --into, or with a missing file, restore says what to give."""
    run("retention", "apply", "--store", f"sqlite:{store}")
    (row,) = json.loads(run("archive", "list", "--store", f"sqlite:{store}", "--json").output)
    missing_target = run("archive", "restore", row["archive"], "--store", f"sqlite:{store}")
    assert missing_target.exit_code == 2
    assert "--into PATH" in missing_target.output
    missing_file = run("archive", "restore", str(tmp_path / "nope.ndjson.gz"), "--into", str(tmp_path / "x"))
    assert missing_file.exit_code == 2
    assert "no archive file" in missing_file.output


def test_retention_apply_without_archiving(store: Path):
    """--no-archive deletes and writes no file."""
    result = run("retention", "apply", "--store", f"sqlite:{store}", "--no-archive")
    assert "standard: 4 records deleted" in result.output
    assert "no archives" in run("archive", "list", "--store", f"sqlite:{store}").stderr


def test_retention_apply_on_opensearch_points_to_ism():
    """On OpenSearch, ISM applies retention: the command says so instead of doing anything."""
    result = run("retention", "apply", "--store", "opensearch")
    assert result.exit_code == 2
    assert "ISM applies retention by itself" in result.output


def test_a_bad_tier_setting_is_a_usage_error(store: Path):
    """--tier must be NAME=DAYS."""
    result = run("retention", "apply", "--store", f"sqlite:{store}", "--tier", "extended")
    assert result.exit_code == 2
    assert "NAME=VALUE" in result.output
