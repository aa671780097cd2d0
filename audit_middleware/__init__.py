"""audit-middleware: a complete, trustworthy audit trail in OpenSearch for WSGI/ASGI apps.

One line wraps an app::

    from audit_middleware import AuditMiddleware
    app.wsgi_app = AuditMiddleware(app.wsgi_app)

and ``record()`` adds explicit events where the app knows more (changes, targets).

The names below are loaded on first use, so ``import audit_middleware`` costs almost
nothing and a process pays only for the parts it uses.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from audit_middleware.capture import active as _active

if TYPE_CHECKING:
    from audit_middleware.capture.asgi import ASGIAuditMiddleware
    from audit_middleware.capture.context import (
        audit_context,
        audit_this_request,
        current,
        set_actor,
        set_project,
        set_route,
        set_tenant,
    )
    from audit_middleware.capture.recorder import record
    from audit_middleware.capture.rules import RouteRules, Rule
    from audit_middleware.capture.wsgi import AuditMiddleware
    from audit_middleware.config import AuditConfig, configure, drain, flush, get_config
    from audit_middleware.errors import (
        AuditDeliveryError,
        AuditError,
        AuditValidationError,
        MissingDependencyError,
    )
    from audit_middleware.frameworks.auth import audit_login, audit_login_failed, audit_logout
    from audit_middleware.model.actions import Action, register
    from audit_middleware.model.changes import diff
    from audit_middleware.model.event import (
        Actor,
        AuditEvent,
        ChangeSet,
        PermissionChange,
        Resource,
        Scope,
        register_resource_type,
    )
    from audit_middleware.processing.redaction import Redactor

_EXPORTS: dict[str, str] = {
    "ASGIAuditMiddleware": "audit_middleware.capture.asgi",
    "Action": "audit_middleware.model.actions",
    "Actor": "audit_middleware.model.event",
    "AuditConfig": "audit_middleware.config",
    "AuditDeliveryError": "audit_middleware.errors",
    "AuditError": "audit_middleware.errors",
    "AuditEvent": "audit_middleware.model.event",
    "AuditMiddleware": "audit_middleware.capture.wsgi",
    "AuditValidationError": "audit_middleware.errors",
    "ChangeSet": "audit_middleware.model.event",
    "MissingDependencyError": "audit_middleware.errors",
    "PermissionChange": "audit_middleware.model.event",
    "Redactor": "audit_middleware.processing.redaction",
    "Resource": "audit_middleware.model.event",
    "RouteRules": "audit_middleware.capture.rules",
    "Rule": "audit_middleware.capture.rules",
    "Scope": "audit_middleware.model.event",
    "audit_context": "audit_middleware.capture.context",
    "audit_login": "audit_middleware.frameworks.auth",
    "audit_login_failed": "audit_middleware.frameworks.auth",
    "audit_logout": "audit_middleware.frameworks.auth",
    "audit_this_request": "audit_middleware.capture.context",
    "configure": "audit_middleware.config",
    "current": "audit_middleware.capture.context",
    "diff": "audit_middleware.model.changes",
    "drain": "audit_middleware.config",
    "flush": "audit_middleware.config",
    "get_config": "audit_middleware.config",
    "record": "audit_middleware.capture.recorder",
    "register": "audit_middleware.model.actions",
    "register_resource_type": "audit_middleware.model.event",
    "set_actor": "audit_middleware.capture.context",
    "set_project": "audit_middleware.capture.context",
    "set_route": "audit_middleware.capture.context",
    "set_tenant": "audit_middleware.capture.context",
}

__all__ = [
    "ASGIAuditMiddleware",
    "Action",
    "Actor",
    "AuditConfig",
    "AuditDeliveryError",
    "AuditError",
    "AuditEvent",
    "AuditMiddleware",
    "AuditValidationError",
    "ChangeSet",
    "MissingDependencyError",
    "PermissionChange",
    "Redactor",
    "Resource",
    "RouteRules",
    "Rule",
    "Scope",
    "audit_context",
    "audit_login",
    "audit_login_failed",
    "audit_logout",
    "audit_this_request",
    "configure",
    "current",
    "diff",
    "drain",
    "flush",
    "get_config",
    "record",
    "register",
    "register_resource_type",
    "set_actor",
    "set_project",
    "set_route",
    "set_tenant",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'audit_middleware' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


def _default_config() -> Any:
    # Registered here, not in config, so that capture finds the default set-up even in a
    # process that never imported config: the first request builds it.
    from audit_middleware.config import default_config  # noqa: PLC0415 - see the module docstring

    return default_config()


_active.set_default_factory(_default_config)
