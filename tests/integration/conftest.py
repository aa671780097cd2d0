"""The background scenarios: started when collection ends, checked by tests that run last.

A test that needs a scenario asks for its fixture (``SCENARIO_FIXTURES``). If any
selected test does, that scenario starts right after collection (so it waits on
ISM's and Alerting's one-minute clocks while the rest of the suite runs), and those tests
are moved to the end of the run. The session summary lists every milestone reached.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from opensearchpy import OpenSearch

from tests.conftest import OPENSEARCH_URL, node_ready
from tests.integration.scenarios import (
    AlertScenario,
    ClusterScenario,
    PlainNodeScenario,
    RetentionScenario,
    Scenario,
)


def _home() -> Path:
    default = Path.home() / ".cache" / "audit-middleware" / "opensearch"
    return Path(os.environ.get("AUDIT_OPENSEARCH_HOME", default)).expanduser()


def _port() -> int:
    return int(os.environ.get("AUDIT_OPENSEARCH_PORT", "9200"))


def _client() -> OpenSearch:
    return OpenSearch([OPENSEARCH_URL], timeout=60)


# fixture name -> how to make the scenario
SCENARIO_FIXTURES: dict[str, Callable[[], Scenario]] = {
    "retention_run": lambda: RetentionScenario(_client(), OPENSEARCH_URL),
    "alert_run": lambda: AlertScenario(_client(), OPENSEARCH_URL),
    "plain_node": lambda: PlainNodeScenario(_home(), _port() + 52),
    "cluster_run": ClusterScenario,
}
_started: dict[str, Scenario] = {}


def _start(name: str) -> Scenario:
    if name not in _started:
        _started[name] = SCENARIO_FIXTURES[name]().start()
    return _started[name]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that check background scenarios run last, in their order: they only wait for what is left."""
    waiting = [item for item in items if set(getattr(item, "fixturenames", ())) & SCENARIO_FIXTURES.keys()]
    if waiting:
        others = [item for item in items if item not in waiting]
        items[:] = others + waiting


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start every scenario a selected test needs, now, so that they all wait in parallel."""
    needed = {
        name
        for item in session.items
        for name in getattr(item, "fixturenames", ())
        if name in SCENARIO_FIXTURES
    }
    if not needed or session.config.option.collectonly:
        return
    try:
        ready = node_ready()
    except BaseException:  # noqa: BLE001 - pytest.fail under CI: the tests report it themselves
        return
    if ready:
        for name in sorted(needed):
            _start(name)


def pytest_sessionfinish() -> None:
    for scenario in _started.values():
        scenario.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print what each background scenario reached, and when."""
    if not _started:
        return
    terminalreporter.section("background scenarios (seconds after each started)")
    for name, scenario in _started.items():
        milestones = scenario.milestones
        reached = ", ".join(f"{milestone} +{seconds:.0f}s" for milestone, seconds in milestones.seen.items())
        terminalreporter.write_line(f"{name}: {reached or 'nothing reached'}")
        for what, figures in milestones.notes.items():
            terminalreporter.write_line(
                f"{name} {what}: " + ", ".join(f"{k}={v}" for k, v in figures.items())
            )
        if milestones.failure:
            terminalreporter.write_line(f"{name} FAILED: {milestones.failure.splitlines()[-1]}")


def _scenario(name: str, opensearch: object) -> Iterator[Scenario]:
    del opensearch  # asked for so that a missing node skips (or, under CI, fails) first
    yield _start(name)


@pytest.fixture(scope="session")
def retention_run(opensearch: object) -> Iterator[Scenario]:
    """Both retention tiers in minutes on the local node (``RetentionScenario``)."""
    yield from _scenario("retention_run", opensearch)


@pytest.fixture(scope="session")
def alert_run(opensearch: object) -> Iterator[Scenario]:
    """The alert monitors on their one-minute schedule (``AlertScenario``)."""
    yield from _scenario("alert_run", opensearch)


@pytest.fixture(scope="session")
def plain_node(opensearch: object) -> Iterator[Scenario]:
    """A node without the ISM and Alerting plugins (``PlainNodeScenario``)."""
    yield from _scenario("plain_node", opensearch)


@pytest.fixture(scope="session")
def cluster_run(opensearch: object) -> Iterator[Scenario]:
    """The local three-node cluster (``ClusterScenario``)."""
    yield from _scenario("cluster_run", opensearch)
