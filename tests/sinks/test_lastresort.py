"""The last resort: each undelivered record as one JSON line on stderr, and never an exception."""

from __future__ import annotations

import json
import sys

import pytest

from audit_middleware.sinks.lastresort import write_undelivered
from tests.query.conftest import make_event


class Unprintable:
    """A value whose repr() fails, so its record cannot be encoded."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_each_event_is_one_json_line_with_the_error(capsys: pytest.CaptureFixture[str]) -> None:
    """Every event becomes a line holding its stored document and the error's repr."""
    events = [make_event("create", ago_ms=n) for n in range(3)]
    write_undelivered(events, OSError("disk full"))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3
    entries = [json.loads(line) for line in lines]
    assert [entry["audit_middleware_undelivered"] for entry in entries] == [e.to_document() for e in events]
    assert {entry["error"] for entry in entries} == {"OSError('disk full')"}


def test_an_event_that_cannot_be_encoded_does_not_stop_the_others(capsys: pytest.CaptureFixture[str]) -> None:
    """A record that fails to encode is skipped silently; the records after it are still written."""
    broken = make_event("create", details={"value": Unprintable()})
    fine = make_event("delete")
    write_undelivered([broken, fine], ValueError("x"))
    [line] = capsys.readouterr().err.splitlines()
    assert json.loads(line)["audit_middleware_undelivered"]["event"]["id"] == fine.id


def test_a_broken_stderr_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """If stderr itself cannot be written, write_undelivered() still returns normally."""

    class ClosedStream:
        def write(self, text: str) -> int:
            raise ValueError("I/O operation on closed file")

    monkeypatch.setattr(sys, "stderr", ClosedStream())
    write_undelivered([make_event("create")], RuntimeError("sink down"))


def test_stderr_is_looked_up_when_writing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stream in sys.stderr at call time is used (a supervisor may replace it)."""
    written: list[str] = []

    class Collecting:
        def write(self, text: str) -> int:
            written.append(text)
            return len(text)

    monkeypatch.setattr(sys, "stderr", Collecting())
    event = make_event("create")
    write_undelivered([event], RuntimeError("x"))
    assert len(written) == 1
    assert written[0].endswith("\n")
    assert event.id in written[0]


def test_an_empty_list_writes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    """No events, no output."""
    write_undelivered([], RuntimeError("x"))
    assert capsys.readouterr().err == ""
