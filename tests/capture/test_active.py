"""The installed-settings slot: install() swaps, current_settings() builds the registered default once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from audit_middleware.capture import active
from audit_middleware.capture.settings import CaptureSettings
from audit_middleware.errors import AuditError
from audit_middleware.model.event import AuditEvent
from tests.conftest import ROOT


class Settings(CaptureSettings):
    """Capture settings that keep what they are handed."""

    def __init__(self, **fields: object) -> None:
        super().__init__(**fields)  # type: ignore[arg-type]
        self.delivered: list[AuditEvent] = []

    def deliver(self, event: AuditEvent) -> None:
        self.delivered.append(event)


def test_install_returns_what_it_replaces() -> None:
    """install() makes its argument current and hands back the previous settings."""
    first, second = Settings(), Settings()
    active.install(first)
    assert active.current_settings() is first
    assert active.install(second) is first
    assert active.current_settings() is second


def test_nothing_installed_builds_the_default_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """After install(None), the next current_settings() calls the factory, and later calls reuse it."""
    built: list[Settings] = []

    def factory() -> Settings:
        built.append(Settings(service_name=f"default-{len(built)}"))
        return built[-1]

    monkeypatch.setattr(active, "_default_factory", factory)
    active.install(None)
    settings = active.current_settings()
    assert settings is built[0]
    assert active.current_settings() is settings
    assert len(built) == 1


def test_concurrent_first_use_builds_one_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads racing on the first use all get the same settings, built once."""
    built: list[Settings] = []
    start = threading.Barrier(8)

    def factory() -> Settings:
        built.append(Settings())
        return built[-1]

    monkeypatch.setattr(active, "_default_factory", factory)
    active.install(None)
    found: list[CaptureSettings] = []

    def first_use() -> None:
        start.wait(5)
        found.append(active.current_settings())

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(built) == 1
    assert found == [built[0]] * 8


def test_without_a_factory_the_error_says_who_registers_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no settings and no factory, current_settings() raises AuditError naming the config module."""
    monkeypatch.setattr(active, "_default_factory", None)
    active.install(None)
    with pytest.raises(AuditError, match=r"audit_middleware\.config"):
        active.current_settings()


def test_set_default_factory_registers_the_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    """A factory registered with set_default_factory() is the one used."""
    monkeypatch.setattr(active, "_default_factory", None)
    made = Settings(service_name="registered")
    active.set_default_factory(lambda: made)
    active.install(None)
    assert active.current_settings() is made


def test_a_fresh_process_builds_the_configuration_from_the_environment(tmp_path: Path) -> None:
    """In a process that never imported config, the package's factory builds an AuditConfig on first use."""
    script = """
import json, sys
import audit_middleware
from audit_middleware.capture import active
before = "audit_middleware.config" in sys.modules
settings = active.current_settings()
print(json.dumps({
    "config_imported_before": before,
    "type": type(settings).__module__ + "." + type(settings).__name__,
    "sink": type(settings.sink).__name__,
    "path": str(settings.sink.path),
    "same": active.current_settings() is settings,
}))
settings.sink.close()
"""
    environ = {
        key: value
        for key, value in os.environ.items()
        if key not in ("AUDIT_OPENSEARCH_URL", "AUDIT_LOG_FILE")
    }
    environ["AUDIT_SQLITE_PATH"] = str(tmp_path / "fresh.sqlite3")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=environ, capture_output=True, text=True, check=True
    )
    report = json.loads(result.stdout)
    assert report == {
        "config_imported_before": False,
        "type": "audit_middleware.config.AuditConfig",
        "sink": "SQLiteSink",
        "path": str(tmp_path / "fresh.sqlite3"),
        "same": True,
    }
