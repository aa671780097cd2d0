"""Deprecated import path: use ``audit_middleware.frameworks.flask``."""

import warnings

from audit_middleware.frameworks.flask import AuditExtension, FlaskActorResolver, UserMapper, actor_from_user

__all__ = ["AuditExtension", "FlaskActorResolver", "UserMapper", "actor_from_user"]

warnings.warn(
    "audit_middleware.flask moved to audit_middleware.frameworks.flask"
    "; the old path will be removed in a future release",
    DeprecationWarning,
    stacklevel=2,
)
