"""Django integration: a middleware for ``MIDDLEWARE``, under WSGI and ASGI alike.

    MIDDLEWARE = [
        ...
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "audit_middleware.frameworks.django.AuditMiddleware",  # after the auth middleware
        ...
    ]

It binds the request's audit context itself (no need to wrap the WSGI/ASGI app as well),
records the URL pattern as the route, takes the actor from ``request.user``, and sends
the request's record when the response is done (for a streamed response: when it is
closed). Logins, logouts and failed logins are recorded from Django's auth signals
(:mod:`audit_middleware.frameworks.django.auth`). Optional settings, applied at start-up
when ``"audit_middleware.frameworks.django"`` is in ``INSTALLED_APPS``::

    AUDIT_MIDDLEWARE = {
        "rules": [Rule("POST", "/pods/<pod_id>/start", action="start", resource_type="pod")],
        "tenant_resolver": "myapp.audit.tenant_of",   # dotted paths or the objects themselves
        "user_mapper": "myapp.audit.actor_of",
    }

Its keys are the keyword arguments of :func:`audit_middleware.configure`, plus
``user_mapper`` (a ``user -> Actor | None`` callable; default :func:`actor_from_user`)
and ``models`` (``{"app_label.Model": {register() options}}`` or a list of labels).

Changes of registered models (see :mod:`audit_middleware.frameworks.django.changes`)::

    from audit_middleware.frameworks.django import AuditedModel, audited, register

    register(Post, exclude=["body"], name_field="title")
"""

from __future__ import annotations

from audit_middleware.errors import MissingDependencyError

try:
    import django  # noqa: F401 - only to fail early with the clear message
except ImportError as exc:  # the one clear message this adapter's users need
    raise MissingDependencyError(
        "audit_middleware.frameworks.django needs Django, which is not installed: "
        "pip install opensearch-audit-middleware[django]"
    ) from exc

from audit_middleware.frameworks.django.changes import AuditedModel, audited, register
from audit_middleware.frameworks.django.middleware import AuditMiddleware, UserMapper, actor_from_user

__all__ = ["AuditMiddleware", "AuditedModel", "UserMapper", "actor_from_user", "audited", "register"]
