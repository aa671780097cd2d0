"""Exceptions raised by audit-middleware."""

from __future__ import annotations


class AuditError(Exception):
    """Base class of every error this library raises on purpose."""


class AuditValidationError(AuditError, ValueError):
    """An audit record, action or option was invalid; the message says which and why."""


class MissingDependencyError(AuditError, ImportError):
    """An optional framework or library is needed for this feature but is not installed."""
