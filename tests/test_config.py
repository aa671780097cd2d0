"""The wiring: configure() builds and installs an AuditConfig, and AuditConfig.deliver redacts, then emits."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit_middleware import config as audit_config
from audit_middleware.capture import active
from audit_middleware.capture.clientip import ProxyTrust
from audit_middleware.capture.rules import STATE_CHANGING_METHODS, RouteRules, Rule
from audit_middleware.capture.settings import CaptureSettings
from audit_middleware.config import AuditConfig, configure, get_config, reset, use_config
from audit_middleware.model.event import AuditEvent
from audit_middleware.processing.redaction import Redactor
from audit_middleware.sinks import JsonLinesSink, MemorySink
from audit_middleware.sinks.sqlite import SQLiteSink
from tests.query.conftest import make_event


class ClosingSink(MemorySink):
    """A memory sink that counts how often it was closed."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = 0

    def close(self, timeout: float | None = None) -> None:
        self.closed += 1


class SeeingSink(MemorySink):
    """Keeps a copy of each event's details as they were when emit() was called."""

    def __init__(self) -> None:
        super().__init__()
        self.seen_details: list[dict[str, object]] = []

    def emit(self, event: AuditEvent) -> None:
        self.seen_details.append(dict(event.details))
        super().emit(event)


class BrokenSink(MemorySink):
    """A sink whose emit always fails."""

    def emit(self, event: AuditEvent) -> None:
        raise OSError("the disk is on fire")


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No audit variable set from outside, and the working directory in tmp_path."""
    for name in ("AUDIT_OPENSEARCH_URL", "AUDIT_LOG_FILE", "AUDIT_SQLITE_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_configure_builds_and_installs_the_configuration() -> None:
    """configure() turns its options into an AuditConfig, which get_config() then returns."""
    sink = MemorySink()
    redactor = Redactor(extra_keys=["pin"])
    config = configure(
        sink=sink,
        redactor=redactor,
        trusted_proxies=2,
        proxy_header="forwarded",
        rules=[Rule("GET", "/health", audit=False)],
        audit_methods=["post", "Get"],
        service_name="billing",
        user_agent_limit=64,
    )
    assert get_config() is config
    assert config.sink is sink
    assert config.redactor is redactor
    assert config.trust == ProxyTrust(hops=2, header="forwarded")
    assert isinstance(config.rules, RouteRules)
    assert config.rules.decide("GET", "/health", None, force=True) is None, "the rule is in force"
    assert config.audit_methods == frozenset({"POST", "GET"})
    assert config.service_name == "billing"
    assert config.user_agent_limit == 64


def test_configure_defaults() -> None:
    """Without options: no proxy trusted, state-changing methods audited, a default redactor."""
    config = configure(sink=MemorySink())
    assert config.trust == ProxyTrust()
    assert config.audit_methods == STATE_CHANGING_METHODS
    assert isinstance(config.redactor, Redactor)
    assert config.user_agent_limit == 512


def test_configure_accepts_route_rules_as_they_are() -> None:
    """A RouteRules object is installed as given, not wrapped again."""
    rules = RouteRules([Rule("POST", "/pods/<pod_id>/start", action="start")])
    assert configure(sink=MemorySink(), rules=rules).rules is rules


@pytest.mark.parametrize("limit", [15, 0, -1])
def test_a_too_small_user_agent_limit_is_refused(limit: int, audit_sink: MemorySink) -> None:
    """user_agent_limit below 16 raises ValueError and leaves the installed configuration in place."""
    before = get_config()
    with pytest.raises(ValueError, match="user_agent_limit must be at least 16"):
        configure(sink=MemorySink(), user_agent_limit=limit)
    assert get_config() is before
    assert get_config().sink is audit_sink


def test_the_smallest_user_agent_limit_is_accepted() -> None:
    """16 characters is the lower bound itself."""
    assert configure(sink=MemorySink(), user_agent_limit=16).user_agent_limit == 16


def test_configure_closes_the_previous_sink_when_it_is_replaced() -> None:
    """A new sink closes the one it replaces, once; the new one stays open."""
    first, second = ClosingSink(), ClosingSink()
    configure(sink=first)
    configure(sink=second)
    assert first.closed == 1
    assert second.closed == 0


def test_configure_keeps_the_sink_when_it_is_the_same() -> None:
    """Configuring again with the same sink (new options) does not close it."""
    sink = ClosingSink()
    configure(sink=sink)
    config = configure(sink=sink, service_name="again")
    assert sink.closed == 0
    assert config.service_name == "again"


def test_configure_over_plain_capture_settings_closes_nothing() -> None:
    """Settings that are not an AuditConfig have no sink: replacing them is not an error."""

    class Settings(CaptureSettings):
        def deliver(self, event: AuditEvent) -> None:
            raise AssertionError("not used")

    active.install(Settings())
    sink = MemorySink()
    assert configure(sink=sink).sink is sink


def test_use_config_swaps_without_closing() -> None:
    """use_config() installs a configuration and hands back the previous one, closing no sink."""
    first = ClosingSink()
    configure(sink=first)
    replacement = AuditConfig(sink=ClosingSink())
    previous = use_config(replacement)
    assert previous is not None
    assert previous.sink is first
    assert get_config() is replacement
    assert first.closed == 0
    assert use_config(previous) is replacement
    assert get_config() is previous


def test_use_config_hides_settings_that_are_not_an_audit_config() -> None:
    """The previous value is None when what was installed is plain capture settings."""

    class Settings(CaptureSettings):
        def deliver(self, event: AuditEvent) -> None:
            raise AssertionError("not used")

    active.install(Settings())
    assert use_config(AuditConfig(sink=MemorySink())) is None


def test_reset_closes_the_sink_and_forgets_the_configuration(clean_environment: Path) -> None:
    """reset() closes the configured sink; the next get_config() builds a new default one."""
    sink = ClosingSink()
    configured = configure(sink=sink)
    reset()
    assert sink.closed == 1
    fresh = get_config()
    assert fresh is not configured
    assert isinstance(fresh.sink, SQLiteSink)


def test_reset_without_a_configuration_is_harmless() -> None:
    """reset() twice in a row does not fail on the missing configuration."""
    configure(sink=ClosingSink())
    reset()
    reset()
    assert active._installed is None


def test_get_config_builds_the_sqlite_default_from_the_environment(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without configure(), the first get_config() opens the SQLite store at AUDIT_SQLITE_PATH, once."""
    path = clean_environment / "state" / "trail.sqlite3"
    monkeypatch.setenv("AUDIT_SQLITE_PATH", str(path))
    use_config(None)
    config = get_config()
    assert isinstance(config.sink, SQLiteSink)
    assert config.sink.path == path
    assert path.exists()
    assert get_config() is config, "built once, then reused"


def test_get_config_writes_json_lines_when_a_log_file_is_set(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AUDIT_LOG_FILE (and no OpenSearch URL) makes the default sink a JSON-lines file."""
    log_file = clean_environment / "logs" / "audit.jsonl"
    monkeypatch.setenv("AUDIT_LOG_FILE", str(log_file))
    use_config(None)
    config = get_config()
    assert isinstance(config.sink, JsonLinesSink)
    assert config.sink.path == log_file
    config.deliver(make_event("create"))
    assert len(log_file.read_text().splitlines()) == 1


def test_default_config_is_not_installed(clean_environment: Path, audit_sink: MemorySink) -> None:
    """default_config() builds a configuration but leaves the installed one alone."""
    built = audit_config.default_config()
    try:
        assert isinstance(built.sink, SQLiteSink)
        assert get_config().sink is audit_sink
    finally:
        built.sink.close()


def test_deliver_redacts_before_the_sink_sees_the_record() -> None:
    """The sink receives details already masked; it never holds the secret."""
    sink = SeeingSink()
    config = AuditConfig(sink=sink)
    config.deliver(make_event("create", details={"password": "hunter2", "name": "web"}))
    assert sink.seen_details == [{"password": "[REDACTED]", "name": "web"}]


def test_deliver_uses_the_configured_redactor() -> None:
    """Keys the app adds to the denylist are masked too."""
    sink = SeeingSink()
    AuditConfig(sink=sink, redactor=Redactor(extra_keys=["pin"])).deliver(
        make_event("create", details={"pin": "1234"})
    )
    assert sink.seen_details == [{"pin": "[REDACTED]"}]


def test_deliver_writes_to_the_last_resort_when_the_sink_raises(
    capsys: pytest.CaptureFixture[str], fallback_dir: Path
) -> None:
    """A failing sink never raises into the caller: the record goes to the private last-resort file,
    redacted, with the error; nothing of it reaches stderr."""
    event = make_event("create", details={"token": "s3cret"})
    AuditConfig(sink=BrokenSink()).deliver(event)
    [kept] = (fallback_dir / "other").glob("*.jsonl")
    text = kept.read_text(encoding="utf-8")
    assert event.id in text
    assert "the disk is on fire" in text
    assert "s3cret" not in text
    assert event.id not in capsys.readouterr().err
