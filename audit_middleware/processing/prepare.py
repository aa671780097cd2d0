"""The processing stage: what capture finished becomes what a sink may store.

Every record passes through :func:`prepare` before any sink (a user's own included) sees
it, so redaction is applied in this one place. A record the policy cannot be applied to
(an app handed in a value redaction cannot read) is kept with what redaction covers
withheld, so no secret passes and the record is not lost either.
"""

from __future__ import annotations

from dataclasses import replace

from audit_middleware import logs
from audit_middleware.model.event import Actor, AuditEvent, ChangeSet
from audit_middleware.processing.redaction import Redactor

__all__ = ["WITHHELD", "prepare"]

WITHHELD = "redaction_failed"
"""The details key of a record whose changes and details were withheld."""


def prepare(event: AuditEvent, redactor: Redactor) -> AuditEvent:
    """Apply the redaction policy to ``event`` (in place) and return it; never raises."""
    try:
        _redact(event, redactor)
    except Exception as exc:  # noqa: BLE001 - a value the policy cannot read must not leak or raise
        _withhold(event, redactor)
        event.details = {WITHHELD: f"{type(exc).__name__}: changes and details withheld"}
        logs.warn(
            "audit record could not be redacted: its changes and details were withheld",
            event_id=event.id,
            error=type(exc).__name__,
        )
    return event


def _redact(event: AuditEvent, redactor: Redactor) -> None:
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


def _withhold(event: AuditEvent, redactor: Redactor) -> None:
    """Remove every part of ``event`` that redaction would have changed."""
    event.changes = None
    if redactor.email_pseudonym_key is not None:
        event.actor = _without_emails(event.actor)
    if redactor.truncate_ips and event.request is not None:
        event.request = replace(event.request, client_ip=None, forwarded_chain=())


def _pseudonymise(actor: Actor, redactor: Redactor) -> Actor:
    impersonator = _pseudonymise(actor.impersonator, redactor) if actor.impersonator else None
    return replace(actor, email=redactor.email(actor.email), impersonator=impersonator)


def _without_emails(actor: Actor) -> Actor:
    impersonator = _without_emails(actor.impersonator) if actor.impersonator else None
    return replace(actor, email=None, impersonator=impersonator)
