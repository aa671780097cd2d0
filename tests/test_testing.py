"""capture_events() for apps' own tests: records go to a list, the rest of the configuration stays."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit_middleware import Resource, record
from audit_middleware.config import AuditConfig, configure, get_config, use_config
from audit_middleware.processing.redaction import Redactor
from audit_middleware.sinks import MemorySink
from audit_middleware.testing import CapturedEvents, capture_events


def test_records_inside_are_captured_and_not_sent(audit_sink: MemorySink) -> None:
    """Inside the block records land in the captured list, in order, and not in the configured sink."""
    with capture_events() as events:
        first = record("create", resource=Resource("pod", "web"))
        second = record("delete", resource=Resource("pod", "web"))
    assert isinstance(events, CapturedEvents)
    assert list(events) == [first, second]
    assert audit_sink.events == []


def test_the_configuration_comes_back_afterwards(audit_sink: MemorySink) -> None:
    """After the block the previous configuration is installed again, and records reach its sink."""
    before = get_config()
    with capture_events():
        assert get_config() is not before
    assert get_config() is before
    event = record("create")
    assert audit_sink.events == [event]


def test_the_rest_of_the_configuration_is_kept() -> None:
    """Redaction and the service name of the app's configuration apply to captured records."""
    configure(sink=MemorySink(), redactor=Redactor(extra_keys=["badge"]), service_name="billing")
    with capture_events() as events:
        record("create", details={"badge": "b-7", "password": "p"})
    [event] = events
    assert event.details == {"badge": "[REDACTED]", "password": "[REDACTED]"}
    assert event.service == "billing"


def test_the_configuration_comes_back_after_an_exception() -> None:
    """A failing test body still restores the configuration."""
    before = get_config()
    with pytest.raises(RuntimeError), capture_events():
        raise RuntimeError("test failed")
    assert get_config() is before


def test_without_a_configuration_no_default_sink_is_built(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Capturing in a process that never configured auditing creates no store file, and leaves none set."""
    monkeypatch.chdir(tmp_path)
    for name in ("AUDIT_OPENSEARCH_URL", "AUDIT_LOG_FILE", "AUDIT_SQLITE_PATH"):
        monkeypatch.delenv(name, raising=False)
    use_config(None)
    with capture_events() as events:
        record("create")
    assert len(events) == 1
    assert list(tmp_path.iterdir()) == []
    assert use_config(None) is None, "nothing was left installed"


def test_documents_are_the_stored_form() -> None:
    """CapturedEvents.documents() gives the ECS documents a store would keep."""
    with capture_events() as events:
        record("restart", resource=Resource("pod", "web"))
    [document] = events.documents()
    assert document == events[0].to_document()
    assert document["event"]["action"] == "restart"


def test_nested_capture_keeps_records_apart() -> None:
    """An inner block captures its own records; the outer one sees only its own."""
    with capture_events() as outer:
        record("create")
        with capture_events() as inner:
            record("delete")
        record("update")
    assert [event.action.id for event in outer] == ["create", "update"]
    assert [event.action.id for event in inner] == ["delete"]


def test_the_installed_configuration_is_an_audit_config() -> None:
    """Inside the block get_config() still works (adapters call it)."""
    with capture_events():
        assert isinstance(get_config(), AuditConfig)
