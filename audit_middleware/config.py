"""Process-wide set-up: how requests are read, how records are redacted, where they go.

This module wires the layers together: capture (``capture.settings``), processing
(``Redactor``) and the sinks. Call ``configure()`` once at start-up; without it, the
first record uses ``default_config()``, with the sink taken from the environment
(``sinks.defaults``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from audit_middleware.capture import active as _capture
from audit_middleware.capture.clientip import ForwardedHeader, ProxyTrust
from audit_middleware.capture.rules import STATE_CHANGING_METHODS, RouteRules, Rule
from audit_middleware.capture.settings import (
    CHANGE_RECORDS,
    ActorResolver,
    CaptureSettings,
    ChangeRecords,
    Deferred,
    ScopeResolver,
)
from audit_middleware.model.event import AuditEvent
from audit_middleware.processing.redaction import Redactor
from audit_middleware.sinks import shutdown
from audit_middleware.sinks.base import Sink, drain_pending
from audit_middleware.sinks.defaults import default_sink
from audit_middleware.sinks.delivery import PIPELINE, Work, deliver, derive_and_deliver

_ORDER_WAIT = 5.0  # seconds a record delivered at once waits for the records queued before it

__all__ = [
    "AuditConfig",
    "configure",
    "default_config",
    "drain",
    "flush",
    "get_config",
    "reset",
    "use_config",
]


@dataclass(slots=True, kw_only=True)
class AuditConfig(CaptureSettings):
    """The settings every middleware, adapter and ``record()`` call share.

    Besides how requests are read (:class:`~audit_middleware.capture.settings.CaptureSettings`),
    the ``sink`` records go to and the ``redactor`` applied before they do.
    """

    sink: Sink
    redactor: Redactor = field(default_factory=Redactor)

    def deliver(self, event: AuditEvent, *, strict: bool = False) -> None:
        """Redact and hand a finished record to the sink (``sinks.delivery``), on this thread.

        These are records made outside a request (or after it answered): ``strict`` ones
        (``record()``) must tell their caller whether they are safe. Requests go through
        :meth:`submit`; the records queued there before this one reach the sink first.
        """
        if not PIPELINE.on_worker():
            PIPELINE.wait_for_earlier(_ORDER_WAIT)
        deliver(event, self.sink, self.redactor, strict=strict)

    def submit(self, job: Deferred) -> None:
        """Derive and deliver a finished request's records on the delivery worker."""
        # a durable sink promises the record is safe when the response ends: no hand-off
        if getattr(self.sink, "durable", False) is True:
            self._process(job)
        else:
            PIPELINE.submit(self._process, job)

    def _process(self, work: Work) -> None:
        derive_and_deliver(work, self, self.sink, self.redactor)

    def drain(self, timeout: float | None = None) -> bool:
        """Persist and deliver what every buffering sink holds (``sinks.shutdown.drain``)."""
        done = shutdown.drain(timeout)
        return self.sink.persist(timeout) and self.sink.flush(timeout) and done


def configure(
    *,
    sink: Sink | None = None,
    redactor: Redactor | None = None,
    trusted_proxies: int | Iterable[str] | None = None,
    proxy_header: ForwardedHeader = "x-forwarded-for",
    actor_resolver: ActorResolver | None = None,
    tenant_resolver: ScopeResolver | None = None,
    project_resolver: ScopeResolver | None = None,
    rules: Iterable[Rule] | RouteRules = (),
    audit_methods: Iterable[str] = STATE_CHANGING_METHODS,
    service_name: str | None = None,
    user_agent_limit: int = 512,
    change_records: ChangeRecords = "per_request",
    honest_outcomes: bool | None = None,
    login_paths: Iterable[str] = (),
) -> AuditConfig:
    """Set up auditing for this process and return the configuration.

    ``trusted_proxies`` is the number of reverse proxies in front of the app, or a list
    of their CIDRs; by default none is trusted and the peer address is recorded.
    ``proxy_header`` names the one header those proxies write (``"x-forwarded-for"`` or
    ``"forwarded"``); the other is ignored, since a client can send it unchanged.
    ``change_records`` is ``"per_request"`` (the changes of registered models one
    request makes are one record, every row a target) or ``"per_row"``.
    ``honest_outcomes``: an automatic record that nothing explains is ``unknown`` rather
    than ``success``, a redirect to the login page a ``failure``, and a redirect that only
    normalises the URL is not audited (docs/architecture.md has the table). None (the
    default) turns it on exactly when ORM capture is on (a model is registered).
    ``login_paths``: the app's login pages, when not at a path ending in ``/login``.

    >>> from audit_middleware.sinks import MemorySink
    >>> config = configure(sink=MemorySink(), trusted_proxies=1)
    """
    if user_agent_limit < 16:
        raise ValueError("user_agent_limit must be at least 16 characters")
    if change_records not in CHANGE_RECORDS:
        raise ValueError(f"change_records must be one of {sorted(CHANGE_RECORDS)}, not {change_records!r}")
    new = AuditConfig(
        sink=sink if sink is not None else default_sink(),
        redactor=redactor if redactor is not None else Redactor(),
        trust=ProxyTrust.from_config(trusted_proxies, header=proxy_header),
        actor_resolver=actor_resolver,
        tenant_resolver=tenant_resolver,
        project_resolver=project_resolver,
        rules=rules if isinstance(rules, RouteRules) else RouteRules(rules),
        audit_methods=frozenset(m.upper() for m in audit_methods),
        service_name=service_name,
        user_agent_limit=user_agent_limit,
        change_records=change_records,
        honest_outcomes=honest_outcomes,
        login_paths=frozenset(_names(login_paths, "login_paths")),
    )
    previous = _capture.install(new)
    PIPELINE.resume()  # a drained process that is configured again delivers in the background again
    if isinstance(previous, AuditConfig) and previous.sink is not new.sink:
        previous.sink.close(timeout=5.0)
    return new


def _names(values: Iterable[str], option: str) -> tuple[str, ...]:
    if isinstance(values, str):
        raise TypeError(f"{option} takes a list of paths, not one string: [{values!r}]")
    return tuple(values)


def get_config() -> AuditConfig:
    """The current configuration, creating the default one on first use."""
    config = _capture.current_settings()
    assert isinstance(config, AuditConfig), "capture settings are installed by audit_middleware.config"
    return config


def use_config(new: AuditConfig | None) -> AuditConfig | None:
    """Install ``new`` as the process-wide configuration and return the previous one.

    Unlike ``configure()`` this neither builds nor closes sinks: it is for temporarily
    swapping settings (see ``audit_middleware.testing.capture_events``).
    """
    previous = _capture.install(new)
    return previous if isinstance(previous, AuditConfig) else None


def reset() -> None:
    """Forget the configuration, closing its sink (tests use this between cases)."""
    previous = _capture.install(None)
    if isinstance(previous, AuditConfig):
        previous.sink.close(timeout=5.0)


def default_config() -> AuditConfig:
    """The configuration used until ``configure()`` is called: defaults, sink from the environment."""
    return AuditConfig(sink=default_sink())


def drain(timeout: float | None = None) -> bool:
    """Deliver everything buffered now, before the process ends; True when nothing is left.

    Call it from a server's shutdown hook that the library does not see by itself, e.g.
    gunicorn's ``worker_exit`` (``def worker_exit(server, worker): audit_middleware.drain()``).
    ASGI lifespan shutdown, SIGTERM/SIGINT and ``atexit`` drain without it.
    """
    config = _capture.installed()
    if isinstance(config, AuditConfig):
        return config.drain(timeout)
    return shutdown.drain(timeout)


def flush(timeout: float | None = None) -> bool:
    """Wait until every record made so far is derived, redacted and handed to the sink, and
    the sink has delivered it; True when nothing is left. Unlike :func:`drain`, the
    process goes on as before (records keep being finished in the background).
    """
    config = _capture.installed()
    if isinstance(config, AuditConfig):
        return config.sink.flush(timeout)
    return drain_pending(timeout)
