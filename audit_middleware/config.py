"""Process-wide set-up: where records go and how requests are read.

Call ``configure()`` once at start-up; without it, the first record uses defaults taken
from the environment (see ``default_sink``).
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from audit_middleware.clientip import ForwardedHeader, ProxyTrust
from audit_middleware.errors import AuditError
from audit_middleware.redact import Redactor
from audit_middleware.rules import STATE_CHANGING_METHODS, RouteRules, Rule
from audit_middleware.schema import Actor, Scope
from audit_middleware.sinks import JsonLinesSink, Sink

ActorResolver = Callable[[Any], Actor | None]
ScopeResolver = Callable[[Any], Scope | str | None]

DEFAULT_LOG_FILE = "audit-events.jsonl"
DEFAULT_SQLITE_PATH = "audit.sqlite3"


@dataclass(slots=True)
class AuditConfig:
    """The settings every middleware, adapter and ``record()`` call share.

    Resolvers receive the framework's request object (Flask/Django/Starlette request,
    or the WSGI environ / ASGI scope for plain apps) and run at response time, after the
    app's own authentication.
    """

    sink: Sink
    redactor: Redactor = field(default_factory=Redactor)
    trust: ProxyTrust = field(default_factory=ProxyTrust)
    actor_resolver: ActorResolver | None = None
    tenant_resolver: ScopeResolver | None = None
    project_resolver: ScopeResolver | None = None
    rules: RouteRules = field(default_factory=RouteRules)
    audit_methods: frozenset[str] = STATE_CHANGING_METHODS
    service_name: str | None = None
    user_agent_limit: int = 512


_lock = threading.Lock()
_config: AuditConfig | None = None


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
) -> AuditConfig:
    """Set up auditing for this process and return the configuration.

    ``trusted_proxies`` is the number of reverse proxies in front of the app, or a list
    of their CIDRs; by default none is trusted and the peer address is recorded.
    ``proxy_header`` names the one header those proxies write (``"x-forwarded-for"`` or
    ``"forwarded"``); the other is ignored, since a client can send it unchanged.

    >>> from audit_middleware.sinks import MemorySink
    >>> config = configure(sink=MemorySink(), trusted_proxies=1)
    """
    global _config
    if user_agent_limit < 16:
        raise ValueError("user_agent_limit must be at least 16 characters")
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
    )
    with _lock:
        previous, _config = _config, new
    if previous is not None and previous.sink is not new.sink:
        previous.sink.close(timeout=5.0)
    return new


def get_config() -> AuditConfig:
    """The current configuration, creating the default one on first use."""
    config = _config
    if config is not None:
        return config
    with _lock:
        if _config is None:
            _set_default()
        assert _config is not None
        return _config


def _set_default() -> None:
    global _config  # noqa: PLW0603 - lazily created default configuration
    _config = AuditConfig(sink=default_sink())


def default_sink() -> Sink:
    """The sink used when none is configured, chosen by the environment.

    * ``AUDIT_OPENSEARCH_URL`` set: ``OpenSearchSink`` (connection settings from the
      ``AUDIT_OPENSEARCH_*`` variables);
    * else ``AUDIT_LOG_FILE`` set: a JSON-lines file there;
    * else the embedded SQLite store at ``AUDIT_SQLITE_PATH`` (default
      ``./audit.sqlite3``), which the CLI can search.

    If the SQLite file cannot be opened (a read-only working directory, say), records go
    to standard output as JSON lines, with one warning, rather than break the host app.
    The sinks are imported here, when first needed: capture modules do not import the
    OpenSearch client or the query side.
    """
    if os.environ.get("AUDIT_OPENSEARCH_URL"):
        from audit_middleware.opensearch.sink import OpenSearchSink  # noqa: PLC0415 - see docstring

        return OpenSearchSink()
    log_file = os.environ.get("AUDIT_LOG_FILE")
    if log_file:
        return JsonLinesSink(log_file)
    from audit_middleware.query.sqlite_store import SQLiteStore  # noqa: PLC0415 - see docstring

    path = os.environ.get("AUDIT_SQLITE_PATH") or DEFAULT_SQLITE_PATH
    try:
        return SQLiteStore(path)
    except (OSError, AuditError) as exc:
        warnings.warn(
            f"audit-middleware: cannot open the audit store {path!r} ({exc}); writing audit records to "
            "standard output instead. Set AUDIT_SQLITE_PATH to a writable file, or configure a sink.",
            RuntimeWarning,
            stacklevel=2,
        )
        return JsonLinesSink.stdout()


def use_config(new: AuditConfig | None) -> AuditConfig | None:
    """Install ``new`` as the process-wide configuration and return the previous one.

    Unlike ``configure()`` this neither builds nor closes sinks: it is for temporarily
    swapping settings (see ``audit_middleware.testing.capture_events``).
    """
    global _config
    with _lock:
        previous, _config = _config, new
    return previous


def reset() -> None:
    """Forget the configuration, closing its sink (tests use this between cases)."""
    global _config
    with _lock:
        previous, _config = _config, None
    if previous is not None:
        previous.sink.close(timeout=5.0)
