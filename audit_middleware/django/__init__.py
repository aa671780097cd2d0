"""Deprecated import path: use ``audit_middleware.frameworks.django``.

Kept so that existing settings keep working: ``"audit_middleware.django"`` in
``INSTALLED_APPS`` and ``"audit_middleware.django.AuditMiddleware"`` in ``MIDDLEWARE``.
"""

import warnings

from audit_middleware.frameworks.django import AuditMiddleware, UserMapper, actor_from_user

__all__ = ["AuditMiddleware", "UserMapper", "actor_from_user"]

warnings.warn(
    "audit_middleware.django moved to audit_middleware.frameworks.django"
    "; the old path will be removed in a future release",
    DeprecationWarning,
    stacklevel=2,
)
