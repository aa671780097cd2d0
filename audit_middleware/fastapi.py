"""Deprecated import path: use ``audit_middleware.frameworks.fastapi``."""

import warnings

from audit_middleware.frameworks.fastapi import (
    RouteTemplate,
    UserMapper,
    actor_from_user,
    audit_actor,
    install,
)

__all__ = ["RouteTemplate", "UserMapper", "actor_from_user", "audit_actor", "install"]

warnings.warn(
    "audit_middleware.fastapi moved to audit_middleware.frameworks.fastapi"
    "; the old path will be removed in a future release",
    DeprecationWarning,
    stacklevel=2,
)
