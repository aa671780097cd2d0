"""``audit-middleware import``: NDJSON (plain or gzip) into the SQLite store, documents as stored."""

from __future__ import annotations

import gzip
import sqlite3
from pathlib import Path

from click.testing import CliRunner

from audit_middleware.cli import main
from audit_middleware.model.encoding import dumps
from audit_middleware.query.model import AuditQuery
from audit_middleware.query.sqlite_store import SQLiteStore
from tests.query.conftest import MINUTE, make_event


def _documents(count: int) -> list[str]:
    return [dumps(make_event("create", ago_ms=n * MINUTE).to_document()).decode() for n in range(count)]


def _stored(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT event_id, document FROM events").fetchall())


def test_an_export_is_imported_byte_for_byte(tmp_path: Path) -> None:
    """Each NDJSON line becomes one record whose stored document is that line; search finds them."""
    documents = _documents(30)
    source = tmp_path / "export.ndjson"
    source.write_text("\n".join(documents) + "\n\n")
    store = tmp_path / "audit.sqlite3"
    result = CliRunner().invoke(main, ["import", "--store", f"sqlite:{store}", str(source)])
    assert result.exit_code == 0, result.output
    assert "imported 30 records" in result.output
    assert sorted(_stored(store).values()) == sorted(documents)
    with SQLiteStore(store) as reader:
        assert reader.count(AuditQuery.build("acme", search="create")) == 30  # actions and FTS were built
        assert len(reader.search(AuditQuery.build("acme", page_size=10)).events) == 10


def test_gzip_archives_and_a_second_run_add_nothing_twice(tmp_path: Path) -> None:
    """A gzip file is read as such (by its content, not its name); records already stored are skipped."""
    documents = _documents(12)
    archive = tmp_path / "archive-0001.data"
    with gzip.open(archive, "wt") as out:
        out.write("\n".join(documents) + "\n")
    store = tmp_path / "audit.sqlite3"
    runner = CliRunner()
    assert runner.invoke(main, ["import", "--store", f"sqlite:{store}", str(archive)]).exit_code == 0
    again = runner.invoke(main, ["import", "--store", f"sqlite:{store}", str(archive)])
    assert again.exit_code == 0, again.output
    assert "imported 0 records" in again.output
    assert "12 already stored" in again.output
    assert len(_stored(store)) == 12


def test_lines_that_are_not_records_are_refused_and_named(tmp_path: Path) -> None:
    """Bad lines are refused with their line numbers (exit 1); the good ones are imported."""
    good = _documents(2)
    source = tmp_path / "mixed.ndjson"
    source.write_text("\n".join([good[0], "not json", '{"event": {}}', "[1, 2]", good[1]]) + "\n")
    store = tmp_path / "audit.sqlite3"
    result = CliRunner().invoke(main, ["import", "--store", f"sqlite:{store}", str(source)])
    assert result.exit_code == 1
    assert "imported 2 records" in result.output
    assert "3 refused" in result.output
    assert "line 2:" in result.output
    assert "line 3:" in result.output
    assert "line 4:" in result.output
    assert len(_stored(store)) == 2


def test_the_opensearch_store_is_refused(tmp_path: Path) -> None:
    """import writes only the SQLite store; asking for OpenSearch is a usage error, not a crash."""
    source = tmp_path / "a.ndjson"
    source.write_text(_documents(1)[0] + "\n")
    result = CliRunner().invoke(main, ["import", "--store", "opensearch", str(source)])
    assert result.exit_code == 2
    assert "sqlite:PATH" in result.output
