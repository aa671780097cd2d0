"""audit-middleware: a complete, trustworthy audit trail in OpenSearch for WSGI/ASGI apps.

One line wraps an app::

    from audit_middleware import AuditMiddleware
    app.wsgi_app = AuditMiddleware(app.wsgi_app)

and ``record()`` adds explicit events where the app knows more (changes, targets).
"""

from audit_middleware.actions import Action, register
from audit_middleware.asgi import ASGIAuditMiddleware
from audit_middleware.changes import diff
from audit_middleware.config import AuditConfig, configure, get_config
from audit_middleware.context import (
    audit_this_request,
    current,
    set_actor,
    set_project,
    set_route,
    set_tenant,
)
from audit_middleware.errors import AuditError, AuditValidationError, MissingDependencyError
from audit_middleware.recorder import record
from audit_middleware.redact import Redactor
from audit_middleware.rules import RouteRules, Rule
from audit_middleware.schema import Actor, AuditEvent, ChangeSet, Resource, Scope, register_resource_type
from audit_middleware.wsgi import AuditMiddleware

__all__ = [
    "ASGIAuditMiddleware",
    "Action",
    "Actor",
    "AuditConfig",
    "AuditError",
    "AuditEvent",
    "AuditMiddleware",
    "AuditValidationError",
    "ChangeSet",
    "MissingDependencyError",
    "Redactor",
    "Resource",
    "RouteRules",
    "Rule",
    "Scope",
    "audit_this_request",
    "configure",
    "current",
    "diff",
    "get_config",
    "record",
    "register",
    "register_resource_type",
    "set_actor",
    "set_project",
    "set_route",
    "set_tenant",
]
