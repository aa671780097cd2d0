"""The environment variables and the state-dir layout, read in one place."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit_middleware import env

NAMES = sorted(
    value
    for name, value in vars(env).items()
    if name.isupper() and isinstance(value, str) and value.startswith("AUDIT_")
)


def test_every_variable_is_in_the_table() -> None:
    """The module docstring's table lists every AUDIT_* variable the constants name, and no other."""
    assert env.__doc__ is not None
    table = {word.strip("`") for word in env.__doc__.split() if word.startswith("``AUDIT_")}
    assert table == set(NAMES)


@pytest.mark.parametrize(("environ", "expected"), [({}, None), ({"X": ""}, None), ({"X": "v"}, "v")])
def test_value_treats_empty_as_unset(environ: dict[str, str], expected: str | None) -> None:
    """value() gives None for an unset or empty variable, else its text."""
    assert env.value("X", environ) == expected


def test_value_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a mapping, os.environ is read at call time."""
    monkeypatch.setenv("AUDIT_TEST_VALUE", "now")
    assert env.value("AUDIT_TEST_VALUE") == "now"
    monkeypatch.delenv("AUDIT_TEST_VALUE")
    assert env.value("AUDIT_TEST_VALUE") is None


def test_opensearch_is_configured_by_its_url() -> None:
    """A non-empty AUDIT_OPENSEARCH_URL makes OpenSearch the destination."""
    assert env.opensearch_configured({"AUDIT_OPENSEARCH_URL": "http://127.0.0.1:9200"})
    assert not env.opensearch_configured({"AUDIT_OPENSEARCH_URL": ""})
    assert not env.opensearch_configured({})


def test_sqlite_path() -> None:
    """AUDIT_SQLITE_PATH names the store, else ./audit.sqlite3."""
    assert env.sqlite_path({}) == Path("audit.sqlite3")
    assert env.sqlite_path({"AUDIT_SQLITE_PATH": "/var/lib/app/trail.db"}) == Path("/var/lib/app/trail.db")


def test_state_dir_prefers_the_spool_dir_variable() -> None:
    """AUDIT_SPOOL_DIR wins over XDG_STATE_HOME."""
    environ = {"AUDIT_SPOOL_DIR": "/srv/audit", "XDG_STATE_HOME": "/home/a/.state"}
    assert env.state_dir(environ) == Path("/srv/audit")


def test_state_dir_under_xdg_state_home() -> None:
    """Without AUDIT_SPOOL_DIR, the state lives in $XDG_STATE_HOME/audit-middleware."""
    assert env.state_dir({"XDG_STATE_HOME": "/home/a/.state"}) == Path("/home/a/.state/audit-middleware")


def test_state_dir_default_is_in_the_home_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With neither variable, ~/.local/state/audit-middleware."""
    monkeypatch.setenv("HOME", str(tmp_path))
    assert env.state_dir({}) == tmp_path / ".local" / "state" / "audit-middleware"


def test_the_layout_below_a_state_dir() -> None:
    """The spool and the dead-letter file have fixed names below the state directory."""
    state = Path("/srv/audit")
    assert env.spool_dir(state) == Path("/srv/audit/spool")
    assert env.dead_letter_path(state) == Path("/srv/audit/dead-letter.jsonl")
