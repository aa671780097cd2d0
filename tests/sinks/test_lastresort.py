"""The last resort: a private file per process, replayed into the store, adopted after a crash."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from audit_middleware.model.event import AuditEvent
from audit_middleware.sinks.lastresort import LastResort, waiting
from tests.query.conftest import make_event


@pytest.fixture
def warnings_seen(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The library's warnings during the test."""
    seen: list[str] = []
    monkeypatch.setattr("audit_middleware.logs.warn", lambda message, **fields: seen.append(message))
    return seen


def _store_into(stored: list[AuditEvent]):
    def store(events: list[AuditEvent]) -> None:
        stored.extend(events)

    return store


def test_kept_records_are_private_and_replayed_once(tmp_path: Path, warnings_seen: list[str]) -> None:
    """Kept records land in a 0600 file in a 0700 directory, warn once, and are replayed once."""
    last = LastResort(tmp_path / "dest", name="the test store")
    events = [make_event("create", ago_ms=n) for n in range(3)]
    last.keep(events[:2], OSError("disk full"))
    last.keep(events[2:], OSError("disk full"))
    (kept,) = (tmp_path / "dest").iterdir()
    assert stat.S_IMODE((tmp_path / "dest").stat().st_mode) == 0o700
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert waiting(tmp_path / "dest") == 3
    assert len(warnings_seen) == 1
    assert "S3CR3T" not in warnings_seen[0]
    stored: list[AuditEvent] = []
    assert last.pending()
    assert last.replay(_store_into(stored)) == 3
    assert [event.id for event in stored] == [event.id for event in events]
    assert not last.pending()
    assert last.replay(_store_into(stored)) == 0
    assert last.stats().replayed == 3


def test_a_failing_store_keeps_the_records_for_later(tmp_path: Path, warnings_seen: list[str]) -> None:
    """When the store still fails, replay stops and nothing is deleted."""
    last = LastResort(tmp_path / "dest", name="the test store")
    last.keep([make_event("create")], OSError("locked"))

    def failing(events: list[AuditEvent]) -> None:
        raise OSError("still locked")

    assert last.replay(failing) == 0
    assert waiting(tmp_path / "dest") == 1
    stored: list[AuditEvent] = []
    assert last.replay(_store_into(stored)) == 1


def test_a_dead_processes_file_is_adopted(tmp_path: Path) -> None:
    """Records kept by a process that died are replayed by the next one, and their file removed."""
    event = make_event("create")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            LastResort(tmp_path / "dest", name="child").keep([event], OSError("full"))
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    last = LastResort(tmp_path / "dest", name="parent")
    assert last.pending()
    stored: list[AuditEvent] = []
    assert last.replay(_store_into(stored)) == 1
    assert [e.id for e in stored] == [event.id]
    assert list((tmp_path / "dest").iterdir()) == []


def test_a_live_processes_file_is_left_alone(tmp_path: Path) -> None:
    """Another live LastResort's file is not taken (its process still appends to it)."""
    first = LastResort(tmp_path / "dest", name="first")
    first.keep([make_event("create")], OSError("full"))
    second = LastResort(tmp_path / "dest", name="second")
    stored: list[AuditEvent] = []
    assert second.replay(_store_into(stored)) == 0
    assert first.replay(_store_into(stored)) == 1


def test_unwritable_directory_holds_in_memory_then_counts_lost(
    tmp_path: Path, warnings_seen: list[str]
) -> None:
    """If even the file cannot be written, records wait in memory; past the limit, or at close, are lost."""
    (tmp_path / "file").write_text("not a directory")
    last = LastResort(tmp_path / "file" / "dest", name="the test store", hold_limit=2)
    last.keep([make_event("create", ago_ms=n) for n in range(3)], OSError("full"))
    assert (last.stats().held, last.stats().lost) == (2, 1)
    last.close()
    assert last.stats().lost == 3
    assert any("lost" in message for message in warnings_seen)


class Unprintable:
    """A value whose repr() fails, so its record cannot be encoded."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_an_event_that_cannot_be_encoded_does_not_stop_the_others(tmp_path: Path) -> None:
    """A record that fails to encode is counted lost; the records after it are still kept."""
    last = LastResort(tmp_path / "dest", name="the test store")
    broken = make_event("create", details={"value": Unprintable()})
    fine = make_event("delete")
    last.keep([broken, fine], ValueError("x"))
    assert waiting(tmp_path / "dest") == 1
    assert last.stats().lost == 1
    stored: list[AuditEvent] = []
    assert last.replay(_store_into(stored)) == 1
    assert [event.id for event in stored] == [fine.id]


def test_keeping_no_events_writes_nothing(tmp_path: Path, warnings_seen: list[str]) -> None:
    """No events: no file, no directory, no warning."""
    last = LastResort(tmp_path / "dest", name="the test store")
    last.keep([], RuntimeError("x"))
    assert not (tmp_path / "dest").exists() or waiting(tmp_path / "dest") == 0
    assert warnings_seen == []
    assert not last.pending()
