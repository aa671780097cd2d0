"""What capture needs to know: how requests are read, and the door records leave by.

Capture sits below processing and the sinks and never imports them. The configuration
that wires the layers together (``audit_middleware.config``) subclasses
:class:`CaptureSettings` and implements :meth:`~CaptureSettings.deliver`, the one door
through which every finished record leaves capture; ``capture.active`` holds the
installed instance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from audit_middleware.capture.clientip import ProxyTrust
from audit_middleware.capture.rules import STATE_CHANGING_METHODS, RouteRules
from audit_middleware.model.event import Actor, AuditEvent, Scope

__all__ = ["CHANGE_RECORDS", "ActorResolver", "CaptureSettings", "ChangeRecords", "Deferred", "ScopeResolver"]

ActorResolver = Callable[[Any], Actor | None]
ScopeResolver = Callable[[Any], Scope | str | None]
ChangeRecords = Literal["per_request", "per_row"]
CHANGE_RECORDS: frozenset[str] = frozenset(("per_request", "per_row"))


class Deferred(Protocol):
    """Records still to be derived (``capture.derive.RequestJob``): the worker calls ``events``."""

    def events(self, config: CaptureSettings) -> list[AuditEvent]:
        """The finished records; reads only raw values, never an app object."""
        ...


@dataclass(slots=True, kw_only=True)
class CaptureSettings:
    """How requests are read and audited.

    Resolvers receive the framework's request object (Flask/Django/Starlette request,
    or the WSGI environ / ASGI scope for plain apps) and run at response time, after the
    app's own authentication. ``change_records`` says how the changes of registered
    models that one request (or one operation outside requests) made are recorded:
    ``"per_request"``, one record with every row as a target, or ``"per_row"``.
    ``honest_outcomes`` picks the outcome rules of automatic records (``capture.outcomes``):
    None means on exactly when some model is registered (ORM capture is on).
    ``login_paths`` names the app's login pages, for "redirected to log in".
    """

    trust: ProxyTrust = field(default_factory=ProxyTrust)
    actor_resolver: ActorResolver | None = None
    tenant_resolver: ScopeResolver | None = None
    project_resolver: ScopeResolver | None = None
    rules: RouteRules = field(default_factory=RouteRules)
    audit_methods: frozenset[str] = STATE_CHANGING_METHODS
    service_name: str | None = None
    user_agent_limit: int = 512
    change_records: ChangeRecords = "per_request"
    honest_outcomes: bool | None = None
    login_paths: frozenset[str] = frozenset()

    def has_resolvers(self) -> bool:
        """Whether the app resolves actor, tenant or project itself (from the framework's
        request, which only the request thread can read)."""
        return (self.actor_resolver, self.tenant_resolver, self.project_resolver) != (None, None, None)

    def drain(self, timeout: float | None = None) -> bool:  # noqa: ARG002 - implemented by config
        """Deliver what is buffered before the process ends (the ASGI lifespan shutdown calls it)."""
        return True

    def submit(self, job: Deferred) -> None:
        """Hand a finished request over: its records are derived and delivered from it, on
        the background worker (or at once when the process is ending); never raises."""
        raise NotImplementedError("CaptureSettings.submit is implemented by audit_middleware.config")

    def deliver(self, event: AuditEvent, *, strict: bool = False) -> None:
        """Hand a finished record on; never raises into the host app, except that with
        ``strict`` (an explicit ``record()`` delivered at once) a durable sink's refusal does."""
        raise NotImplementedError("CaptureSettings.deliver is implemented by audit_middleware.config")
