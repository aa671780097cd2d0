"""docker-compose.yml: OpenSearch, Dashboards with a healthcheck, and the one-shot setup service.

No Docker engine runs here, so the file's structure is checked with PyYAML, the
healthcheck's test against sample ``/api/status`` answers, and the setup service's
script against the local node (the real repository registration and ``setup``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from audit_middleware.opensearch.dashboards import bundle
from tests.conftest import OPENSEARCH_URL, ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict[str, Any] = COMPOSE["services"]


def status_answer(state: str) -> str:
    """An /api/status body of OpenSearch Dashboards 2.19 whose overall state is ``state``."""
    return json.dumps(
        {
            "name": "dashboards",
            "version": {"number": "2.19.4"},
            "status": {
                "overall": {"since": "2026-01-01T00:00:00Z", "state": state, "title": state.title()},
                "statuses": [{"id": "core:opensearch@2.19.4", "state": "green", "message": "Ready"}],
            },
        },
        separators=(",", ":"),
    )


def test_services_and_images():
    """OpenSearch and Dashboards 2.19, and a setup service built from this repository."""
    assert set(SERVICES) == {"opensearch", "dashboards", "setup"}
    assert SERVICES["opensearch"]["image"].startswith("opensearchproject/opensearch:2.19.")
    assert SERVICES["dashboards"]["image"].startswith("opensearchproject/opensearch-dashboards:2.19.")
    assert SERVICES["setup"]["build"] == "."
    assert (ROOT / "Dockerfile").is_file()


def test_ports_are_published_on_localhost_only():
    """Security is off in this file, so nothing listens beyond 127.0.0.1."""
    for service in SERVICES.values():
        for port in service.get("ports", ()):
            assert port.startswith("127.0.0.1:"), port


def test_setup_runs_once_after_both_are_healthy():
    """setup waits for healthy OpenSearch and Dashboards, is never restarted, and knows both URLs."""
    setup = SERVICES["setup"]
    assert setup["depends_on"] == {
        "opensearch": {"condition": "service_healthy"},
        "dashboards": {"condition": "service_healthy"},
    }
    assert setup["restart"] == "no"
    assert setup["environment"]["AUDIT_OPENSEARCH_URL"] == "http://opensearch:9200"
    assert setup["environment"]["AUDIT_DASHBOARDS_URL"] == "http://dashboards:5601"


def test_the_snapshot_repository_lives_under_path_repo_on_a_volume():
    """The repository setup registers is inside the node's path.repo, which is a named volume."""
    opensearch = SERVICES["opensearch"]
    path_repo = next(e.split("=", 1)[1] for e in opensearch["environment"] if e.startswith("path.repo="))
    script = SERVICES["setup"]["command"][0]
    assert f'"location": "{path_repo}/audit-archive"' in script
    assert f"opensearch-snapshots:{path_repo}" in opensearch["volumes"]
    assert "opensearch-snapshots" in COMPOSE["volumes"]


def _healthcheck_filter() -> str:
    """The part of the Dashboards healthcheck after curl: what decides healthy."""
    test = SERVICES["dashboards"]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    fetch, decide = (part.strip() for part in test[1].split("|", 1))
    assert fetch == "curl -fsS http://localhost:5601/api/status"
    return decide


@pytest.mark.parametrize(("state", "healthy"), [("green", True), ("yellow", False), ("red", False)])
def test_dashboards_is_healthy_only_when_its_overall_state_is_green(state, healthy):
    """/api/status is 200 in every state: the check reads status.overall.state (green only)."""
    if shutil.which("sh") is None or shutil.which("grep") is None:
        pytest.skip("needs sh and grep")
    result = subprocess.run(
        ["sh", "-c", _healthcheck_filter()], input=status_answer(state), text=True, check=False
    )
    assert (result.returncode == 0) is healthy


def test_the_image_installs_the_package_and_runs_the_cli():
    """The Dockerfile copies what the wheel is built from and runs audit-middleware."""
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "COPY pyproject.toml README.md ./" in dockerfile
    assert "COPY audit_middleware ./audit_middleware" in dockerfile
    assert 'ENTRYPOINT ["audit-middleware"]' in dockerfile
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {"!pyproject.toml", "!README.md", "!audit_middleware/"} <= set(ignored)


def test_readme_opens_the_dashboard_the_bundle_installs():
    """The README's link opens the Audit Logs dashboard by its stable id."""
    board = next(o for o in bundle.saved_objects() if o["type"] == "dashboard")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docker compose up" in readme
    assert f"http://127.0.0.1:5601/app/dashboards#/view/{board['id']}" in readme


@pytest.mark.opensearch
def test_setup_script_registers_the_repository_and_runs_setup(opensearch, tmp_path):
    """The setup service's script, pointed at the local node, registers the repository and sets up."""
    settings = opensearch.nodes.info(metric="settings")["nodes"].popitem()[1]["settings"]
    path_repo = settings["path"]["repo"][0]
    prefix, repository = f"compose-{uuid.uuid4().hex[:8]}", f"compose-{uuid.uuid4().hex[:8]}"
    script = (
        SERVICES["setup"]["command"][0]
        .replace("http://opensearch:9200", OPENSEARCH_URL)
        .replace("/usr/share/opensearch/snapshots/audit-archive", str(Path(path_repo) / repository))
        .replace("audit-archive", repository)
        .replace('"audit-middleware", ', f'"{Path(sys.executable).parent / "audit-middleware"}", ')
        .replace('"--replicas", "0"]', '"--replicas", "0", "--skip-ism"]')
    )
    environ = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AUDIT_OPENSEARCH_", "AUDIT_DASHBOARDS_"))
        },
        "AUDIT_OPENSEARCH_URL": OPENSEARCH_URL,
        "AUDIT_OPENSEARCH_PREFIX": prefix,
    }
    try:
        result = subprocess.run(
            [sys.executable, "-c", script], env=environ, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr
        assert f"registered snapshot repository {repository}" in result.stdout
        assert f"created    data stream {prefix}-standard" in result.stdout
        assert opensearch.snapshot.get_repository(repository=repository)[repository]["type"] == "fs"
    finally:
        from tests.integration.layout import remove_layout  # noqa: PLC0415

        remove_layout(opensearch, prefix)
        with contextlib.suppress(Exception):
            opensearch.snapshot.delete_repository(repository=repository)
