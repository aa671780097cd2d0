"""The administration commands' output: what the server says cannot drive the terminal."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from audit_middleware.cli import main

HOSTILE = "mapper_parsing_exception: value [\x1b]0;owned\x07\x9b2J\u202e\x7f]"


@pytest.fixture
def hostile_status(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cluster answers with an error text (and an ISM message) quoting a stored value full of control
    characters."""

    def cluster_status(settings: Any) -> dict[str, Any]:
        ism = {
            "index": ".ds-audit-000001",
            "policy": "audit-standard",
            "state": "hot",
            "action": "rollover",
            "step": "attempt_rollover",
            "step_status": "failed",
            "failed": True,
            "message": HOSTILE,  # ISM messages quote the server too
        }
        return {
            "urls": ["http://127.0.0.1:9"],
            "opensearch_version": None,
            "error": HOSTILE,
            "indices": [ism],
        }

    monkeypatch.setattr("audit_middleware.opensearch.status.cluster_status", cluster_status)


@pytest.mark.parametrize("as_json", [False, True])
def test_status_output_escapes_control_characters(
    hostile_status: None, tmp_path: Path, as_json: bool
) -> None:
    """status (table and --json) shows control and bidi characters from the server as escapes."""
    args = ["status", "--state-dir", str(tmp_path), *(["--json"] if as_json else [])]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    raw = [char for char in result.stdout if unicodedata.category(char) in {"Cc", "Cf"} and char != "\n"]
    assert raw == []
    if as_json:
        assert json.loads(result.stdout)["error"] == HOSTILE
    else:
        assert "BLOCKED: mapper_parsing_exception" in result.stdout
        assert "FAILED: mapper_parsing_exception" in result.stdout
