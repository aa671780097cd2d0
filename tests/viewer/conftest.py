"""Fixtures of the viewer tests: the demo server process, seeded records, and a browser page."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from audit_middleware.model.event import Actor, ChangeSet, Resource
from audit_middleware.query.sqlite_store import SQLiteStore
from audit_middleware.sinks.sqlite import SQLiteSink
from tests.query.conftest import DAY, MINUTE, make_event
from tests.viewer.browser import CHROMIUM_ARGS, DemoServer, demo_server, require_chromium

ALICE = Actor(id="u-1", name="alice", email="alice@acme.example", roles=("admin",))
CI_BOT = Actor(id="svc-ci", name="ci", kind="service")
PASSWORDS = {"alice": "wonderland", "bob": "builder", "dave": "diver"}


def seed(path: Path) -> dict[str, Any]:
    """Older records beside the scenario's: for date ranges, pages and another tenant's secrets."""
    batch = [
        make_event(
            "create",
            ago_ms=2 * DAY + index * MINUTE,
            user=CI_BOT,
            resource=Resource("pod", f"b{index}", f"batch-{index:03d}"),
        )
        for index in range(70)
    ]
    named = {
        "old_delete": make_event(
            "delete", ago_ms=3 * DAY, user=ALICE, resource=Resource("storage", "s-9", "old-backup")
        ),
        "old_update": make_event(
            "update",
            ago_ms=20 * DAY,
            user=ALICE,
            resource=Resource("pod", "p-9", "legacy-api"),
            changes=ChangeSet(
                {"replicas": 2, "image": "api:1"}, {"replicas": 3, "image": "api:2"}, ("image", "replicas")
            ),
        ),
        "ancient": make_event(
            "create", ago_ms=40 * DAY, user=ALICE, resource=Resource("project", "pr-1", "archive-2025")
        ),
        "globex_secret": make_event(
            "create",
            tenant="globex",
            ago_ms=MINUTE,
            user=Actor(id="u-2", email="bob@globex.example"),
            resource=Resource("pod", "g-1", "globex-secret-db"),
        ),
    }
    with SQLiteSink(path) as sink:
        sink.write([*batch, *named.values()])
    return named


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium (skips on a laptop without it; fails under CI=true)."""
    return require_chromium()


@pytest.fixture(scope="module")
def server(chromium: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    """The demo console as a real server process, its scenario run and older records seeded."""
    with demo_server(tmp_path_factory.mktemp("demo")) as running:
        yield running


@pytest.fixture(scope="module")
def seeded(server: DemoServer) -> dict[str, Any]:
    """The seeded records by name."""
    return seed(server.store_path)


@pytest.fixture
def store(server: DemoServer) -> Iterator[SQLiteStore]:
    """The store the server writes, read directly to compare with the page."""
    with SQLiteStore(server.store_path) as opened:
        yield opened


@pytest.fixture(scope="session")
def browser(chromium: Path) -> Iterator[Any]:
    """One headless Chromium for the session (a fresh profile), in UTC+1/+2 (Europe/Berlin)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(chromium),
            headless=True,
            args=CHROMIUM_ARGS,
            timezone_id="Europe/Berlin",
            viewport={"width": 1280, "height": 900},
            accept_downloads=True,
        )
        context.set_default_timeout(15_000)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh tab without cookies; fails the test if the page broke its Content-Security-Policy."""
    browser.clear_cookies()
    tab = browser.new_page()
    problems: list[str] = []
    tab.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    tab.on("pageerror", lambda error: problems.append(str(error)))
    try:
        yield tab
    finally:
        tab.close()
    violations = [text for text in problems if "Content Security Policy" in text or "Refused to" in text]
    assert not violations, violations


def login(page: Any, server: DemoServer, username: str) -> None:
    """Log in through the app's own login route (the session cookie lands in the browser)."""
    answer = page.request.post(
        f"{server.origin}/login", form={"username": username, "password": PASSWORDS[username]}
    )
    assert answer.ok, answer.text()
