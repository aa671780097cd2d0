"""The record format's fields (DESIGN.md "Record format"): the contract the templates and stores keep."""

from __future__ import annotations

# The record format's ECS fields (DESIGN.md "Record format"; the contract other modules write).
CONTRACT_ECS_FIELDS = {
    "@timestamp",
    "ecs.version",
    "event.id",
    "event.kind",
    "event.action",
    "event.category",
    "event.type",
    "event.outcome",
    "event.dataset",
    "user.id",
    "user.name",
    "user.email",
    "user.roles",
    "user.effective.id",
    "user.effective.name",
    "user.effective.email",
    "source.ip",
    "user_agent.original",
    "http.request.method",
    "http.request.id",
    "http.response.status_code",
    "url.path",
    "trace.id",
    "span.id",  # from the active OpenTelemetry span
    "service.name",
    "organization.id",
    "organization.name",
}

# The record format's product fields and the types the design gives them.
CONTRACT_AUDIT_FIELDS = {
    "audit.actor.kind": "keyword",
    "audit.action.label": "keyword",
    "audit.action.group": "keyword",
    "audit.action.filter": "keyword",
    "audit.project.id": "keyword",
    "audit.project.name": "keyword",
    "audit.resource.type": "keyword",
    "audit.resource.id": "keyword",
    "audit.resource.name": "keyword",
    "audit.targets.type": "keyword",
    "audit.targets.id": "keyword",
    "audit.targets.name": "keyword",
    "audit.changes.before": "flat_object",
    "audit.changes.after": "flat_object",
    "audit.changes.fields": "keyword",
    "audit.details": "flat_object",
    "audit.source.forwarded": "keyword",
    "audit.http.route": "keyword",
    "audit.tier": "keyword",
    # read by the alert rules (model.alerts)
    "audit.target_count": "integer",
    "audit.permissions.added": "keyword",
    "audit.permissions.removed": "keyword",
    # the hash chain's link (model.chain); prev and hash are kept in _source only
    "audit.chain.id": "keyword",
    "audit.chain.seq": "long",
    "audit.chain.prev": "keyword",
    "audit.chain.hash": "keyword",
}
