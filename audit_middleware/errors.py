"""Exceptions raised by audit-middleware."""

from __future__ import annotations


class AuditError(Exception):
    """Base class of every error this library raises on purpose."""


class AuditValidationError(AuditError, ValueError):
    """An audit record, action or option was invalid; the message says which and why."""


class MissingDependencyError(AuditError, ImportError):
    """An optional framework or library is needed for this feature but is not installed."""


class AuditDeliveryError(AuditError):
    """A durable sink could not keep a record it was asked to store: the record is not kept.

    Raised only to an explicit caller (``record()`` outside a request, ``Sink.store``);
    records finished by the middleware never raise into the server.
    """


class SinkSetupError(AuditError):
    """A sink cannot work where it was pointed (an unusable state directory, say); the message says why."""
