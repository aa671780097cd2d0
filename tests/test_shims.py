"""Deprecated import paths: the same objects as the new ones, a DeprecationWarning, old Django settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytest.importorskip("flask")
pytest.importorskip("fastapi")
pytest.importorskip("django")

SHIMS = {
    "audit_middleware.flask": "audit_middleware.frameworks.flask",
    "audit_middleware.fastapi": "audit_middleware.frameworks.fastapi",
    "audit_middleware.structlog": "audit_middleware.frameworks.structlog",
    "audit_middleware.django": "audit_middleware.frameworks.django",
}

SAME_OBJECTS = """
import importlib, json, sys, warnings
warnings.simplefilter("ignore", DeprecationWarning)
old, new = importlib.import_module(sys.argv[1]), importlib.import_module(sys.argv[2])
print(json.dumps({name: getattr(old, name) is getattr(new, name) for name in old.__all__}))
"""

# An old project: the app and the middleware under their former dotted names.
OLD_DJANGO_PROJECT = """
import json
import django
from django.conf import settings
from django.http import HttpResponse
from django.test import Client
from django.urls import path
from audit_middleware.sinks import MemorySink

def create_pod(request):
    return HttpResponse(status=201)

urlpatterns = [path("pods", create_pod)]
SINK = MemorySink()
settings.configure(
    SECRET_KEY="test-only",
    ALLOWED_HOSTS=["testserver"],
    ROOT_URLCONF="__main__",
    DATABASES={},
    INSTALLED_APPS=["audit_middleware.django"],
    MIDDLEWARE=["audit_middleware.django.AuditMiddleware"],
    AUDIT_MIDDLEWARE={"sink": SINK, "service_name": "legacy-settings"},
)
django.setup()
status = Client().post("/pods", data="{}", content_type="application/json").status_code
print(json.dumps({"status": status, "documents": SINK.documents()}))
"""


def run_python(*arguments: str, sqlite_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the interpreter on ``arguments`` from the repository root, in a fresh process."""
    environ = dict(os.environ)
    if sqlite_path is not None:  # where a record would go if the settings were not applied
        environ["AUDIT_SQLITE_PATH"] = str(sqlite_path)
    return subprocess.run(
        [sys.executable, *arguments],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize(("old", "new"), SHIMS.items(), ids=list(SHIMS))
def test_the_old_path_exports_the_same_objects(old: str, new: str) -> None:
    """Every name the old module exports is the very object of the new module."""
    result = run_python("-c", SAME_OBJECTS, old, new)
    assert result.returncode == 0, result.stderr
    exported = json.loads(result.stdout)
    assert exported, "the shim exports names"
    assert exported == dict.fromkeys(exported, True)


@pytest.mark.parametrize(("old", "new"), SHIMS.items(), ids=list(SHIMS))
def test_the_old_path_warns_that_it_moved(old: str, new: str) -> None:
    """Importing the old path raises a DeprecationWarning naming the new one (as an error under -W error)."""
    result = run_python("-W", "error::DeprecationWarning", "-c", f"import {old}")
    assert result.returncode != 0
    assert f"DeprecationWarning: {old} moved to {new}" in result.stderr
    assert "will be removed in a future release" in result.stderr


@pytest.mark.parametrize("new", SHIMS.values())
def test_the_new_paths_do_not_warn(new: str) -> None:
    """The frameworks/ modules import cleanly with deprecation warnings as errors."""
    result = run_python("-W", "error::DeprecationWarning", "-c", f"import {new}")
    assert result.returncode == 0, result.stderr


def test_old_django_settings_still_audit_a_request(tmp_path: Path) -> None:
    """The old INSTALLED_APPS name applies AUDIT_MIDDLEWARE; the old MIDDLEWARE path records the request."""
    default_store = tmp_path / "default.sqlite3"
    result = run_python(
        "-W", "ignore::DeprecationWarning", "-c", OLD_DJANGO_PROJECT, sqlite_path=default_store
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == 201
    [document] = report["documents"]
    assert document["event"]["action"] == "create"
    assert document["url"]["path"] == "/pods"
    assert document["http"]["response"]["status_code"] == 201
    assert document["service"]["name"] == "legacy-settings", "the app's settings were applied"
    assert not default_store.exists(), "nothing went to the default sink"


def test_the_old_app_name_is_the_audit_app() -> None:
    """Django finds the shim's AppConfig (label audit_middleware), not a plain AppConfig of its own."""
    script = (
        "import django; from django.conf import settings;"
        "settings.configure(INSTALLED_APPS=['audit_middleware.django'], DATABASES={}); django.setup();"
        "from django.apps import apps; config = apps.get_app_config('audit_middleware');"
        "print(type(config).__module__, config.name)"
    )
    result = run_python("-W", "ignore::DeprecationWarning", "-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["audit_middleware.django.apps", "audit_middleware.django"]
