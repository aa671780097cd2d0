"""The processing stage: what capture finished becomes what a sink may store.

Every record passes through :func:`prepare` before any sink (a user's own included) sees
it, so redaction is applied in this one place.
"""

from __future__ import annotations

from dataclasses import replace

from audit_middleware.model.event import Actor, AuditEvent, ChangeSet
from audit_middleware.processing.redaction import Redactor

__all__ = ["prepare"]


def prepare(event: AuditEvent, redactor: Redactor) -> AuditEvent:
    """Apply the redaction policy to ``event`` (in place) and return it."""
    if event.changes is not None:
        before, after, fields = redactor.redact_changes(
            event.changes.before, event.changes.after, event.changes.fields
        )
        event.changes = ChangeSet(before, after, fields)
    if event.details:
        event.details = redactor.redact_mapping(event.details)
    if redactor.email_pseudonym_key is not None:
        event.actor = _pseudonymise(event.actor, redactor)
    if redactor.truncate_ips and event.request is not None:
        # every address of the record, the raw chain included, whatever its form
        event.request = replace(
            event.request,
            client_ip=redactor.ip(event.request.client_ip),
            forwarded_chain=tuple(redactor.forwarded(element) for element in event.request.forwarded_chain),
        )
    return event


def _pseudonymise(actor: Actor, redactor: Redactor) -> Actor:
    impersonator = _pseudonymise(actor.impersonator, redactor) if actor.impersonator else None
    return replace(actor, email=redactor.email(actor.email), impersonator=impersonator)
