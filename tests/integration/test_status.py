"""`audit-middleware status`: connection, set-up, spool and dead letters, seen from outside."""

from __future__ import annotations

import json
import warnings

import pytest
from click.testing import CliRunner

from audit_middleware.cli import main
from audit_middleware.opensearch.provisioning import SetupConfig, apply
from audit_middleware.sinks.opensearch.deadletter import DeadLetterFile
from audit_middleware.sinks.opensearch.spool import Spool
from tests.conftest import OPENSEARCH_URL
from tests.integration.layout import remove_layout

pytestmark = pytest.mark.opensearch


def run_status(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["status", "--url", OPENSEARCH_URL, *args])
    return result.exit_code, result.output


def test_ready_prefix_reports_ok_and_exits_0(opensearch, unique_name, tmp_path):
    """With set-up done and nothing waiting, status says delivery is ok and lists the backing indices."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        apply(opensearch, SetupConfig(prefix=unique_name, replicas=0, require_ism=False, alert_rules=()))
    try:
        code, output = run_status("--prefix", unique_name, "--state-dir", str(tmp_path))
        assert code == 0, output
        assert "Delivery:      ok" in output
        assert "2.19." in output
        assert "Retention:     2 backing indices" in output
        assert f".ds-{unique_name}-standard-000001" in output
    finally:
        remove_layout(opensearch, unique_name)


def test_missing_setup_is_named_and_exits_1(opensearch, unique_name, tmp_path):
    """Without set-up, status names the missing template and the command to run."""
    code, output = run_status("--prefix", unique_name, "--state-dir", str(tmp_path))
    assert code == 1
    assert "audit-middleware setup" in output


def test_unreachable_url_and_waiting_records_are_reported(tmp_path):
    """A dead URL is one clear error; spooled records and dead letters of any process are counted."""
    spool = Spool(tmp_path / "spool")
    spool.append([b"audit-standard\n{}", b"audit-standard\n{}", b"audit-standard\n{}"], durable=True)
    spool.close()
    DeadLetterFile(tmp_path / "dead-letter.jsonl").write(b"{}", reason="mapper_parsing_exception", status=400)
    result = CliRunner().invoke(
        main, ["status", "--url", "http://127.0.0.1:9", "--state-dir", str(tmp_path), "--json"]
    )
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["error"].startswith("cannot connect to OpenSearch at http://127.0.0.1:9")
    assert report["spool"]["records"] == 3
    assert report["spool"]["oldest_undelivered_seconds"] is not None
    assert report["dead_letters"] == 1
