"""The figures of a hostile-input run: cases tried and every violation seen, by kind."""

from __future__ import annotations

import threading
from collections import Counter

KINDS = ("cases", "host_app_crashes", "records_lost", "cross_tenant_reads", "secrets_found")

_lock = threading.Lock()
counts: Counter[str] = Counter()
by_area: Counter[str] = Counter()


def case(area: str) -> None:
    """One generated case of ``area`` (client IP, WSGI request, CSV, ...) was run."""
    with _lock:
        counts["cases"] += 1
        by_area[area] += 1


def saw(kind: str, amount: int = 1) -> None:
    """Count ``amount`` violations of ``kind`` (the test then fails on them)."""
    if amount:
        with _lock:
            counts[kind] += amount


def figures() -> dict[str, object]:
    """All counters, zeros included, and cases per area."""
    with _lock:
        return {**{kind: counts[kind] for kind in KINDS}, "cases_by_area": dict(by_area)}
