"""Which store an operating command works on: --store, the environment, and clear errors."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from audit_middleware.cli.targets import connection_settings, sqlite_path


def test_the_default_store_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Without --store: OpenSearch when AUDIT_OPENSEARCH_URL is set, else the SQLite file."""
    store = tmp_path / "audit.sqlite3"
    store.write_bytes(b"")
    monkeypatch.setenv("AUDIT_SQLITE_PATH", str(store))
    monkeypatch.delenv("AUDIT_OPENSEARCH_URL", raising=False)
    assert sqlite_path(None) == store
    monkeypatch.setenv("AUDIT_OPENSEARCH_URL", "http://127.0.0.1:9200")
    assert sqlite_path(None) is None
    assert sqlite_path(f"sqlite:{store}") == store


@pytest.mark.parametrize(
    ("spec", "message"), [("sqlite:/nowhere/a.db", "no audit store"), ("mysql:x", "use sqlite:PATH")]
)
def test_a_bad_store_is_a_usage_error(spec: str, message: str):
    """A missing file or an unknown kind of store is named."""
    with pytest.raises(click.BadParameter, match=message):
        sqlite_path(spec)


def test_options_win_over_the_environment(monkeypatch: pytest.MonkeyPatch):
    """--url and --prefix replace AUDIT_OPENSEARCH_URL and AUDIT_OPENSEARCH_PREFIX."""
    monkeypatch.setenv("AUDIT_OPENSEARCH_URL", "http://env.example:9200")
    monkeypatch.setenv("AUDIT_OPENSEARCH_PREFIX", "envprefix")
    assert connection_settings(None, None).urls == ("http://env.example:9200",)
    settings = connection_settings("http://opt.example:9200", "opt")
    assert (settings.urls, settings.prefix) == (("http://opt.example:9200",), "opt")
