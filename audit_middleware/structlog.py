"""Deprecated import path: use ``audit_middleware.frameworks.structlog``."""

import warnings

from audit_middleware.frameworks.structlog import AuditProcessor, add_audit_context

__all__ = ["AuditProcessor", "add_audit_context"]

warnings.warn(
    "audit_middleware.structlog moved to audit_middleware.frameworks.structlog"
    "; the old path will be removed in a future release",
    DeprecationWarning,
    stacklevel=2,
)
