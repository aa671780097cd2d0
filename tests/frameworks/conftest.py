"""Fixtures shared by the framework adapter tests.

Each test module provides an ``app`` fixture that configures auditing the way its example
app does; ``events`` then captures the records sent while the test runs.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from audit_middleware.testing import CapturedEvents, capture_events


@pytest.fixture
def events(app: object) -> Iterator[CapturedEvents]:
    """The audit records sent during the test (after ``app`` set up auditing)."""
    with capture_events() as captured:
        yield captured
