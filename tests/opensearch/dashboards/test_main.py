"""``python -m audit_middleware.opensearch.dashboards``: the one command that regenerates the copies."""

from __future__ import annotations

import subprocess
import sys

import pytest

from audit_middleware.opensearch.dashboards import bundle
from audit_middleware.opensearch.dashboards.__main__ import main
from tests.conftest import ROOT


def test_write_then_check(tmp_path, capsys):
    """--write creates the file, a second --write leaves it, --check then passes."""
    assert main(["--write", str(tmp_path)]) == 0
    assert (tmp_path / bundle.BUNDLE_FILE).read_bytes() == bundle.ndjson()
    assert main(["--write", str(tmp_path)]) == 0
    assert main(["--check", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / bundle.BUNDLE_FILE} (24 saved objects)" in out
    assert f"unchanged {tmp_path / bundle.BUNDLE_FILE}" in out


def test_check_fails_on_a_stale_or_missing_copy(tmp_path, capsys):
    """--check exits 1 and says how to regenerate when the file differs or is absent."""
    (tmp_path / bundle.BUNDLE_FILE).write_bytes(bundle.ndjson()[:-10])
    assert main(["--check", str(tmp_path), str(tmp_path / "absent")]) == 1
    err = capsys.readouterr().err
    assert f"is stale: regenerate it with --write {tmp_path}" in err
    assert "absent" in err


def test_prefix_writes_that_prefixs_objects(tmp_path):
    """--prefix generates the objects of another data stream prefix."""
    assert main(["--prefix", "acme", "--write", str(tmp_path)]) == 0
    assert (tmp_path / bundle.BUNDLE_FILE).read_bytes() == bundle.ndjson("acme")


def test_a_bad_prefix_is_an_error(tmp_path, capsys):
    """An invalid prefix is reported and nothing is written."""
    assert main(["--prefix", "Bad Prefix", "--write", str(tmp_path)]) == 1
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / bundle.BUNDLE_FILE).exists()


def test_nothing_to_do_is_a_usage_error():
    """Without --write or --check the command explains its use."""
    with pytest.raises(SystemExit) as raised:
        main([])
    assert raised.value.code == 2


def test_the_repository_copies_are_current():
    """The module run as a program checks both committed copies (what CI can run on its own)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "audit_middleware.opensearch.dashboards",
            "--check",
            "kibana_dashboards",
            "audit_middleware/opensearch/dashboards",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
