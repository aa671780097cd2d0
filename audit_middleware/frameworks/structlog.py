"""structlog integration: request context on every log line, and log events as audit records.

    import structlog
    from audit_middleware.frameworks.structlog import AuditProcessor, add_audit_context

    structlog.configure(processors=[
        add_audit_context,          # request id, client IP, actor, tenant on every line
        AuditProcessor(),           # log.info("...", audit="restart", resource=...) -> record
        structlog.processors.JSONRenderer(),
    ])

``AuditProcessor`` must sit before any final renderer (it reads the event dict). A log
call never raises because of auditing: a malformed audit request (an unknown action, a
resource without a type, ...) leaves the line as it was plus an ``audit.error`` key, and
each distinct problem is reported once, as a warning.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from audit_middleware import logs
from audit_middleware.capture.active import installed
from audit_middleware.capture.context import ambient, current
from audit_middleware.capture.recorder import record
from audit_middleware.config import AuditConfig
from audit_middleware.model.event import Actor, ChangeSet, Resource, Scope
from audit_middleware.processing.redaction import Redactor

EventDict = MutableMapping[str, Any]

# Keys structlog and its stock processors add: they describe the log line, not the action.
_LOG_KEYS = frozenset(
    (
        "event",
        "timestamp",
        "level",
        "logger",
        "log_level",
        "exc_info",
        "stack_info",
        "_record",
        "_from_structlog",
    )
)
_RECORD_KEYS = frozenset(("audit", "resource", "targets", "changes", "outcome", "actor", "tenant", "project"))
# Problems already reported, so a malformed call in a hot path warns once, not per line.
_REPORTED_LIMIT = 1024
_reported: set[str] = set()
_reported_lock = threading.Lock()


def add_audit_context(logger: Any, method_name: str, event_dict: EventDict) -> EventDict:  # noqa: ARG001
    """Put the current request's (or ``audit_context()``'s) audit context on the log line;
    explicit values win."""
    context = current()
    if context is None:
        scope = ambient()
        if scope is None:
            return event_dict
        _add(event_dict, "http.request.id", scope.request_id)
        _add(event_dict, "trace.id", scope.trace_id)
        return _add_who(event_dict, scope.actor, scope.tenant, scope.project, _redactor())
    event_dict.setdefault("http.request.id", context.request_id)
    event_dict.setdefault("http.request.method", context.method)
    event_dict.setdefault("url.path", context.path)
    redactor = _redactor()
    client_ip = context.client.ip
    _add(event_dict, "source.ip", redactor.ip(client_ip) if client_ip and redactor else client_ip)
    _add(event_dict, "trace.id", context.trace_id)
    return _add_who(event_dict, context.actor, context.tenant, context.project, redactor)


def _redactor() -> Redactor | None:
    # the record's privacy options (IP truncation, email pseudonyms) apply to log lines too
    settings = installed()
    return settings.redactor if isinstance(settings, AuditConfig) else None


def _add(event_dict: EventDict, key: str, value: str | None) -> None:
    if value is not None:
        event_dict.setdefault(key, value)


def _add_who(
    event_dict: EventDict,
    actor: Actor | None,
    tenant: Scope | None,
    project: Scope | None,
    redactor: Redactor | None,
) -> EventDict:
    if actor is not None:
        _add(event_dict, "user.id", actor.id)
        email = actor.email
        _add(event_dict, "user.email", redactor.email(email) if email and redactor else email)
    if tenant is not None:
        event_dict.setdefault("organization.id", tenant.id)
    if project is not None:
        event_dict.setdefault("audit.project.id", project.id)
    return event_dict


class AuditProcessor:
    """Turn log events marked with ``audit=<action id>`` into audit records.

    The log line goes on, with the record's id under ``audit.event_id``. Recognised keys:
    ``resource`` (a Resource or ``{"type", "id", "name"}``), ``targets``, ``changes``,
    ``outcome``, ``actor``, ``tenant``, ``project``; other keys (and the message) become
    the record's details unless ``details_keys`` names the ones to keep.
    """

    __slots__ = ("_details_keys",)

    def __init__(self, details_keys: Iterable[str] | None = None) -> None:
        self._details_keys = None if details_keys is None else frozenset(details_keys)

    def __call__(self, logger: Any, method_name: str, event_dict: EventDict) -> EventDict:  # noqa: ARG002
        """Record the marked event; unmarked events pass unchanged. Never raises."""
        action = event_dict.get("audit")
        if action is None or action is False:
            return event_dict
        try:
            event = record(
                action,
                resource=_resource(event_dict.get("resource")),
                targets=[r for r in map(_resource, _items(event_dict.get("targets"))) if r is not None],
                changes=_changes(event_dict.get("changes")),
                details=self._details(event_dict),
                outcome=event_dict.get("outcome"),
                actor=_actor(event_dict.get("actor")),
                tenant=event_dict.get("tenant"),
                project=event_dict.get("project"),
            )
        except Exception as exc:  # noqa: BLE001 - a log call must never raise because of auditing
            problem = f"{type(exc).__name__}: {exc}"
            event_dict["audit.error"] = problem
            _report_once(f"log event {str(event_dict.get('event'))[:100]!r} made no audit record ({problem})")
            return event_dict
        del event_dict["audit"]
        event_dict["audit.event_id"] = event.id
        return event_dict

    def _details(self, event_dict: EventDict) -> dict[str, Any]:
        keys = self._details_keys
        details = {
            k: v
            for k, v in event_dict.items()
            if k not in _RECORD_KEYS
            and k not in _LOG_KEYS
            and (keys is None or k in keys)
            and not k.startswith(("http.", "url.", "source.", "user.", "trace.", "organization.", "audit."))
        }
        message = event_dict.get("event")
        if isinstance(message, str):
            details["message"] = message
        return details


def _report_once(message: str) -> None:
    with _reported_lock:
        if message in _reported or len(_reported) >= _REPORTED_LIMIT:
            return
        _reported.add(message)
    logs.warn(message)


def _items(value: object) -> Iterable[object]:
    if value is None:
        return ()
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise TypeError(f"targets must be a list of resources, not {type(value).__name__}")
    return value


def _resource(value: object) -> Resource | None:
    if value is None or isinstance(value, Resource):
        return value
    if isinstance(value, Mapping):
        if "type" not in value:
            raise TypeError(f"a resource mapping needs a 'type' (got keys {sorted(map(str, value))})")
        return Resource(str(value["type"]), value.get("id"), value.get("name"))
    raise TypeError(f"resource must be a Resource or a mapping, not {type(value).__name__}")


def _changes(value: object) -> ChangeSet | tuple[Any, Any] | None:
    if value is None or isinstance(value, ChangeSet):
        return value
    if isinstance(value, tuple | list) and len(value) == 2:
        return (value[0], value[1])
    raise TypeError(
        f"changes must be diff(before, after) or a (before, after) pair, not {type(value).__name__}"
    )


def _actor(value: object) -> Actor | None:
    if value is None or isinstance(value, Actor):
        return value
    if isinstance(value, Mapping):
        return Actor(**value)
    raise TypeError(f"actor must be an Actor or a mapping, not {type(value).__name__}")
