"""Delivery counters and health: exact counts across threads, and one warning per transition."""

from __future__ import annotations

import threading

import pytest
from structlog.testing import capture_logs

from audit_middleware.sinks.opensearch.metrics import COUNTERS, DeliveryMetrics


def test_a_new_metrics_object_is_healthy_and_zero() -> None:
    """Every counter starts at 0, healthy, with no error and no degraded time."""
    snapshot = DeliveryMetrics().snapshot()
    assert snapshot == {
        **dict.fromkeys(COUNTERS, 0),
        "healthy": True,
        "last_error": None,
        "degraded_since": None,
    }


@pytest.mark.parametrize("counter", COUNTERS)
def test_add_increases_one_counter(counter: str) -> None:
    """add() raises the named counter by the amount (1 by default) and leaves the others."""
    metrics = DeliveryMetrics()
    metrics.add(counter)
    metrics.add(counter, 41)
    snapshot = metrics.snapshot()
    assert snapshot[counter] == 42
    assert all(snapshot[other] == 0 for other in COUNTERS if other != counter)


def test_adding_zero_changes_nothing() -> None:
    """An amount of 0 is accepted and counts nothing."""
    metrics = DeliveryMetrics()
    metrics.add("delivered", 0)
    assert metrics.delivered == 0


def test_counts_from_many_threads_are_exact() -> None:
    """Concurrent add() calls lose no increment."""
    metrics = DeliveryMetrics()
    start = threading.Barrier(8)

    def count() -> None:
        start.wait(5)
        for _ in range(2000):
            metrics.add("enqueued")
            metrics.add("delivered", 2)

    threads = [threading.Thread(target=count) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert (metrics.enqueued, metrics.delivered) == (16_000, 32_000)


def test_snapshot_is_a_copy() -> None:
    """A snapshot does not change when the metrics do."""
    metrics = DeliveryMetrics()
    snapshot = metrics.snapshot()
    metrics.add("spooled", 3)
    assert snapshot["spooled"] == 0
    assert metrics.snapshot()["spooled"] == 3


def test_degrading_warns_once_and_keeps_the_latest_error() -> None:
    """The first failure warns; later ones only update last_error, and the degraded time stays the first."""
    metrics = DeliveryMetrics()
    with capture_logs() as logs:
        metrics.degraded("connection refused")
        since = metrics.degraded_since
        metrics.degraded("timed out")
        metrics.degraded("HTTP 503")
    assert logs == [
        {
            "event": "audit delivery degraded: records are kept in memory and the disk spool",
            "error": "connection refused",
            "log_level": "warning",
        }
    ]
    snapshot = metrics.snapshot()
    assert snapshot["healthy"] is False
    assert snapshot["last_error"] == "HTTP 503"
    assert since is not None
    assert snapshot["degraded_since"] == since


def test_recovering_warns_once_with_the_degraded_time() -> None:
    """Recovery after a degradation logs once, with how long it lasted; healthy again, since cleared."""
    metrics = DeliveryMetrics()
    metrics.degraded("connection refused")
    assert metrics.degraded_since is not None
    metrics.degraded_since -= 12.0  # as if degraded for twelve seconds
    with capture_logs() as logs:
        metrics.recovered()
        metrics.recovered()
    [entry] = logs
    assert entry["event"] == "audit delivery recovered"
    assert entry["log_level"] == "warning"
    assert 12.0 <= entry["degraded_seconds"] < 60.0
    assert metrics.healthy is True
    assert metrics.degraded_since is None
    assert metrics.last_error == "connection refused", "the last error stays for status reports"


def test_recovering_while_healthy_is_silent() -> None:
    """recovered() on a healthy sink logs nothing."""
    with capture_logs() as logs:
        DeliveryMetrics().recovered()
    assert logs == []


def test_each_transition_warns_again() -> None:
    """Degrade, recover, degrade: three warnings, one per transition."""
    metrics = DeliveryMetrics()
    with capture_logs() as logs:
        metrics.degraded("a")
        metrics.degraded("a again")
        metrics.recovered()
        metrics.degraded("b")
    assert [entry["event"].split(":")[0] for entry in logs] == [
        "audit delivery degraded",
        "audit delivery recovered",
        "audit delivery degraded",
    ]
    assert logs[2]["error"] == "b"
