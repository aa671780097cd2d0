"""The second half of a request's record, derived on the background worker.

At the end of a request the request thread keeps only what it alone can know (see
:func:`audit_middleware.capture.recorder.finish_request`): the raw request values in
its ``RequestContext``, the actor, tenant and project its resolvers gave, the status,
the explicit records and the committed ORM changes (plain snapshots), and when it
ended. That is a :class:`RequestJob`. Everything else is derived here, later and on
another thread: the client IP, request and trace ids, the user-agent cut, the route
decision, the action, and the records by precedence: explicit ``record()`` calls, else
a route rule's action (enriched with the committed changes), else the changes
themselves, else the generic record of a state-changing method.

A request that nothing asked about while it ran (no ``record()``, no adapter, no
resolver, no ORM change) hands over even less: the middleware's copy of the environ or
scope and the raw response start (a :class:`RawRequestJob`); its ``RequestContext`` is
built here too.

Nothing here reads an app object, a framework request or an ORM session, and no
resolver is called: those belong to the request thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from audit_middleware.capture.change_records import Description, describe
from audit_middleware.capture.changes import ChangeLog
from audit_middleware.capture.completion import ANONYMOUS, action_for, apply, failed_status
from audit_middleware.capture.context import LazyContext, PendingRecord, RequestContext
from audit_middleware.capture.outcomes import judge
from audit_middleware.capture.rules import Decision
from audit_middleware.capture.settings import CaptureSettings
from audit_middleware.model.actions import Action
from audit_middleware.model.event import Actor, AuditEvent, Outcome, RequestFacts, Resource, Scope
from audit_middleware.model.ids import uuid7

__all__ = ["RawRequestJob", "RequestJob"]


@dataclass(slots=True)
class RequestJob:
    """What the request thread hands over for a request's record(s): raw values only.

    ``honest`` is the outcome mode in force when the request ended (it depends on the
    ORM registry, which the worker must not race with start-up registrations).
    """

    context: RequestContext
    failure: bool
    ended_ms: int
    actor: Actor
    tenant: Scope | None
    project: Scope | None
    honest: bool

    def events(self, config: CaptureSettings) -> list[AuditEvent]:
        """The request's finished records (none when nothing is to be audited)."""
        context = self.context
        if context.explicit:
            return self._explicit()
        method = context.method
        changes = context.changes
        decision = config.rules.decide(
            method,
            context.path,
            context.route,
            generic_methods=config.audit_methods,
            force=context.force_audit or bool(changes),
        )
        if decision is None:
            return []
        outcome: Outcome = "failure" if self.failure else "success"
        if changes:
            return [
                self._event(description, outcome) for description in self._changes(config, decision, changes)
            ]
        reason = context.denied
        if decision.rule is None and (reason is not None or self.honest):
            # the generic record may claim only what the response shows (else: the status decides)
            status = context.status_code
            redirected = status is not None and 300 <= status < 400 and context.location is not None
            verdict = judge(
                status=status,
                failed=self.failure,
                honest=self.honest,
                path=context.path,
                location=context.location,
                denied=context.denied,
                anonymous=redirected and self.actor is ANONYMOUS,
                login_paths=(*config.login_paths, context.login_path or ""),
            )
            if not verdict.audit:
                return []
            outcome, reason = verdict.outcome, verdict.reason
        elif reason is not None:
            outcome = "failure"
        event = self._event(action_for(decision.action, method), outcome)
        event.resource = decision.resource
        if reason is not None:
            event.details = {"reason": reason}
        return [event]

    def _explicit(self) -> list[AuditEvent]:
        """Explicit records win; one that names a changed row and no change gets the row's change."""
        context = self.context
        changes = context.changes
        rows = {row.key: row for row in changes.rows()} if changes else {}
        facts = context.facts()
        said_by_app = {pending.event.action.id for pending in context.explicit if pending.source == "app"}
        events: list[AuditEvent] = []
        for pending in context.explicit:
            event = pending.event
            if pending.source != "app" and event.action.id in said_by_app:
                continue  # the app recorded this itself (a login, say): one operation, one entry
            if rows and event.changes is None and event.resource is not None:
                row = rows.get((event.resource.type, event.resource.id))
                if row is not None:
                    event.changes = row.change_set()
            events.append(self._complete(pending, facts))
        context.explicit.clear()
        return events

    def _complete(self, pending: PendingRecord, facts: RequestFacts) -> AuditEvent:
        event = pending.event
        if not pending.actor_given:
            event.actor = self.actor
        if not pending.outcome_given and self.failure:
            event.outcome = "failure"
        if event.tenant is None:
            event.tenant = self.tenant
        if event.project is None:
            event.project = self.project
        event.request = facts
        return event

    def _changes(
        self, config: CaptureSettings, decision: Decision, changes: ChangeLog
    ) -> Iterator[Description]:
        """The descriptions of a request's record(s) from its committed changes."""
        rows = changes.rows()
        rule = decision.rule
        if rule is None and config.change_records == "per_row":
            for row in rows:
                yield describe([row], total=1)
            return
        description = describe(rows, total=changes.total, path=self.context.path)
        if rule is None:
            yield description
            return
        # a rule names the operation: its action and resource, enriched with the changes
        resource = decision.resource or description.resource
        targets = description.targets
        changed = rows[0].resource
        if not targets and (resource.type, resource.id) == (changed.type, changed.id):
            resource = Resource(resource.type, resource.id, resource.name or changed.name)
        elif not targets:
            targets = (changed,)  # the row changed is named even when the rule names another resource
        yield Description(
            rule.action or description.action,
            resource,
            targets,
            description.changes,
            description.details,
        )

    def _event(self, what: Description | Action, outcome: Outcome) -> AuditEvent:
        """An automatic record of the request: the action (with the changes' parts), actor, scope."""
        context = self.context
        unix_ms = self.ended_ms
        event = AuditEvent(
            id=uuid7(unix_ms),
            unix_ms=unix_ms,
            action=what if isinstance(what, Action) else action_for(what.action, context.method),
            actor=self.actor,
            outcome=outcome,
            tenant=self.tenant,
            project=self.project,
            request=context.facts(),
        )
        if isinstance(what, Description):
            apply(event, what)
        return event


@dataclass(slots=True)
class RawRequestJob:
    """A request that may be audited and that nothing asked about while it ran.

    Its middleware kept the raw request and response start (``capture.context.LazyContext``);
    the context is built here from them. Nothing on the request thread knew more: with an
    adapter, a resolver, ``record()`` or an ORM change the context is built there and a
    :class:`RequestJob` is handed over instead.
    """

    request: LazyContext
    ended_ms: int
    honest: bool

    def events(self, config: CaptureSettings) -> list[AuditEvent]:
        """The request's finished records (none when nothing is to be audited)."""
        request = self.request
        context = request.open()  # finished, with the status the response started with
        failure = request.failed or failed_status(context)
        actor = context.actor or ANONYMOUS
        return RequestJob(
            context, failure, self.ended_ms, actor, context.tenant, context.project, self.honest
        ).events(config)
