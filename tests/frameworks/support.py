"""Helpers for the framework adapter tests."""

from __future__ import annotations

from typing import Any

from audit_middleware.testing import CapturedEvents

ALICE_TOKEN = {"Authorization": "Bearer demo-token-alice"}


def only(events: CapturedEvents) -> dict[str, Any]:
    """The one record sent, as its stored document (fails unless there is exactly one)."""
    assert len(events) == 1, [event.action.id for event in events]
    return events[0].to_document()
