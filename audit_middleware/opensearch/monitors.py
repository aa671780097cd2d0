"""The alert rules (``model.alerts``) as OpenSearch Alerting monitors: built, installed, read back.

Each rule becomes one bucket-level monitor named ``{prefix}-alert-{rule id}`` that runs
every minute over the tier data streams (named one by one: a wildcard would also match
restored archives and other streams). Its query keeps the rule's actions in the last
``window`` before the run (``{{period_end}}``); a composite aggregation groups by tenant
and the rule's keys; the trigger fires for each group whose count (or sum of
``audit.target_count``) reaches the threshold. Every group becomes its own alert, which
stays ACTIVE while the group keeps firing and completes when it stops.

Grouping keys are painless scripts where a field may be missing (tenant, user):
``missing_bucket`` would make the trigger fail on a null key and lose every bucket.

Installing is idempotent: monitors are found by name; one that holds the desired body
(the server adds defaults, so the comparison is "contains") is left alone, otherwise it
is updated with optimistic concurrency, keeping its trigger id, so that its ACTIVE
alerts survive the update instead of being deleted and raised again.

Notifications: with a channel id (an existing Notifications channel, or the webhook
channel setup creates), each trigger gets an action sent once per new alert. Both need
the Notifications plugin; without it setup refuses the option, and alerts are read from
the Alerting API (``list_alerts``, ``audit-middleware alerts list``).

This module is long because building a monitor, installing it idempotently and reading
its alerts back must agree on one naming and one shape of the alert's bucket.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from opensearchpy import NotFoundError, OpenSearch

from audit_middleware.model.alerts import NO_USER, Alert, AlertRule, AlertState, GroupKey, default_rules
from audit_middleware.model.tenancy import NO_TENANT_KEY, TenantSelector, tenant_key
from audit_middleware.opensearch.errors import retry_while_plugin_index_starts
from audit_middleware.opensearch.steps import SetupError, Status, Step, contains, explained, has_plugin
from audit_middleware.opensearch.tiers import validate_name

__all__ = [
    "ALERTING_PLUGIN",
    "NOTIFICATIONS_PLUGINS",
    "build_monitor",
    "list_alerts",
    "monitor_name",
    "plan_channel",
    "plan_monitors",
]

ALERTING_PLUGIN = "opensearch-alerting"
NOTIFICATIONS_PLUGINS = ("opensearch-notifications", "opensearch-notifications-core")
MONITORS = "/_plugins/_alerting/monitors"
CHANNELS = "/_plugins/_notifications/configs"
AGGREGATION = "by_key"
SAMPLE_SIZE = 10  # record ids carried into each alert
_PAGE = 100

# Stored in the alerts index (mapped dynamically there): only stable keyword fields.
_SAMPLE_SOURCE = {"includes": ["event.id"], "excludes": []}
# the stored key (model.tenancy): no tenant id is stored as the no-tenant key, so groups never mix
_TENANT_SCRIPT = f"doc['organization.id'].size() == 0 ? '{NO_TENANT_KEY}' : doc['organization.id'].value"
_USER_SCRIPT = (
    "doc['user.email'].size() > 0 ? doc['user.email'].value : "
    "(doc['user.name'].size() > 0 ? doc['user.name'].value : "
    f"(doc['user.id'].size() > 0 ? doc['user.id'].value : '{NO_USER}'))"
)
_FIELD_OF: dict[GroupKey, str] = {"ip": "source.ip", "role": "audit.permissions.added", "event": "event.id"}
_TITLES = {rule.id: rule.title for rule in default_rules()}
_TRIGGER = re.compile(r"(?P<rule>[a-z][a-z0-9_.-]*): (?P<threshold>\d+) (records|targets) in (?P<window>\S+)")


def monitor_name(prefix: str, rule_id: str) -> str:
    """The monitor of a rule, e.g. ``audit-alert-failed_logins_per_user``."""
    return f"{_monitor_prefix(prefix)}{rule_id}"


def _monitor_prefix(prefix: str) -> str:
    return f"{validate_name(prefix, 'prefix')}-alert-"


def trigger_name(rule: AlertRule) -> str:
    """The trigger's name, which also records the limits: ``mass_deletion: 20 targets in 10m``."""
    return f"{rule.id}: {rule.condition}"


def _terms(source: dict[str, Any]) -> dict[str, Any]:
    # Spelled out as the server stores it, so that stored and desired compare equal.
    return {"terms": {**source, "missing_bucket": False, "order": "asc"}}


def _source(key: GroupKey | str) -> dict[str, Any]:
    if key == "tenant":
        return {key: _terms({"script": {"source": _TENANT_SCRIPT, "lang": "painless"}})}
    if key == "user":
        return {key: _terms({"script": {"source": _USER_SCRIPT, "lang": "painless"}})}
    return {key: _terms({"field": _FIELD_OF[key]})}  # type: ignore[index]


def build_query(rule: AlertRule) -> dict[str, Any]:
    """The search of one run: the rule's records in its window, grouped by tenant and keys."""
    metrics: dict[str, Any] = {
        "records": {
            "top_hits": {
                "size": SAMPLE_SIZE,
                "sort": [{"@timestamp": {"order": "desc"}}],
                "_source": _SAMPLE_SOURCE,
            }
        }
    }
    if rule.measure == "targets":
        metrics["targets"] = {"sum": {"field": "audit.target_count", "missing": 1}}
    return {
        "size": 0,
        "query": {
            "bool": {
                "filter": [
                    {"terms": {"event.action": list(rule.actions), "boost": 1.0}},
                    {
                        "range": {
                            "@timestamp": {
                                "from": f"{{{{period_end}}}}||-{rule.window}",
                                "to": "{{period_end}}",
                                "include_lower": True,
                                "include_upper": True,
                                "format": "epoch_millis",
                                "boost": 1.0,
                            }
                        }
                    },
                ],
                "adjust_pure_negative": True,
                "boost": 1.0,
            }
        },
        "aggregations": {
            AGGREGATION: {
                "composite": {
                    "size": _PAGE,  # a page size: the monitor follows after_key by itself
                    "sources": [_source("tenant"), *(_source(key) for key in rule.group_by)],
                },
                "aggregations": metrics,
            }
        },
    }


def _action(rule: AlertRule, destination_id: str) -> dict[str, Any]:
    return {
        "name": f"notify {rule.id}",
        "destination_id": destination_id,
        "message_template": {
            "source": (
                # the alert context's bucket_keys: the group's tenant and keys (in no fixed order)
                f"{rule.title} ({rule.condition}): "
                "{{#ctx.newAlerts}}[{{bucket_keys}}] {{/ctx.newAlerts}}"
            ),
            "lang": "mustache",
        },
        "throttle_enabled": False,
        "subject_template": {"source": f"Audit alert: {rule.title}", "lang": "mustache"},
        "action_execution_policy": {"action_execution_scope": {"per_alert": {"actionable_alerts": ["NEW"]}}},
    }


def build_monitor(
    prefix: str, rule: AlertRule, indices: Sequence[str], destination_id: str | None = None
) -> dict[str, Any]:
    """The body of ``POST _plugins/_alerting/monitors`` for one rule over ``indices``."""
    metric = "targets" if rule.measure == "targets" else "_count"
    return {
        "type": "monitor",
        "monitor_type": "bucket_level_monitor",
        "name": monitor_name(prefix, rule.id),
        "enabled": True,
        "schedule": {"period": {"interval": 1, "unit": "MINUTES"}},
        "inputs": [{"search": {"indices": list(indices), "query": build_query(rule)}}],
        "triggers": [
            {
                "bucket_level_trigger": {
                    "name": trigger_name(rule),
                    "severity": rule.severity,
                    "condition": {
                        "buckets_path": {metric: metric},
                        "parent_bucket_path": AGGREGATION,
                        "script": {"source": f"params.{metric} >= {rule.threshold}", "lang": "painless"},
                        "gap_policy": "skip",
                    },
                    "actions": [] if destination_id is None else [_action(rule, destination_id)],
                }
            }
        ],
    }


# -- installing -------------------------------------------------------------------------


def _stored_monitors(client: OpenSearch, prefix: str) -> dict[str, list[dict[str, Any]]]:
    """Our monitors by name (hits with ``_id``, ``_seq_no``, ``_primary_term``, ``_source``)."""
    body = {
        "size": 1000,
        "seq_no_primary_term": True,
        "query": {
            "bool": {
                "filter": [
                    {"term": {"monitor.type": "monitor"}},
                    {"prefix": {"monitor.name.keyword": _monitor_prefix(prefix)}},
                ]
            }
        },
    }
    with explained(client, "search the alerting monitors"):
        try:
            answer = retry_while_plugin_index_starts(
                lambda: client.transport.perform_request("POST", f"{MONITORS}/_search", body=body)
            )
        except NotFoundError:
            return {}  # the alerting config index is created with the first monitor
    found: dict[str, list[dict[str, Any]]] = {}
    for hit in answer.get("hits", {}).get("hits", ()):
        found.setdefault(str(hit["_source"].get("name")), []).append(hit)
    return found


def _with_stored_ids(desired: dict[str, Any], stored: Mapping[str, Any]) -> dict[str, Any]:
    """``desired`` carrying the stored trigger and action ids: ACTIVE alerts stay attached."""
    body = {**desired, "triggers": [dict(trigger) for trigger in desired["triggers"]]}
    old_triggers = stored.get("triggers") or []
    for new, old in zip(body["triggers"], old_triggers, strict=False):
        new_inner = dict(new["bucket_level_trigger"])
        old_inner = old.get("bucket_level_trigger") or {}
        if old_inner.get("id"):
            new_inner["id"] = old_inner["id"]
        old_actions = old_inner.get("actions") or []
        new_inner["actions"] = [
            {**action, "id": previous["id"]} if previous.get("id") else action
            for action, previous in zip(new_inner["actions"], old_actions, strict=False)
        ] + new_inner["actions"][len(old_actions) :]
        new["bucket_level_trigger"] = new_inner
    return body


def _plan_monitor(
    client: OpenSearch, name: str, desired: dict[str, Any], hits: Sequence[Mapping[str, Any]]
) -> Step:
    if len(hits) > 1:
        ids = ", ".join(str(hit["_id"]) for hit in hits)
        raise SetupError(f"{len(hits)} alerting monitors are named {name!r} ({ids}): delete all but one")
    if not hits:

        def create() -> Status:
            with explained(client, f"create alerting monitor {name}"):
                # wait_for: names are not unique, so the next setup must find this one
                retry_while_plugin_index_starts(
                    lambda: client.transport.perform_request(
                        "POST", MONITORS, params={"refresh": "wait_for"}, body=desired
                    )
                )
            return "created"

        return Step("alert monitor", name, "created", run=create)
    hit = hits[0]
    if contains(hit["_source"], desired):
        return Step("alert monitor", name, "unchanged")
    body = _with_stored_ids(desired, hit["_source"])
    params = {"if_seq_no": hit["_seq_no"], "if_primary_term": hit["_primary_term"], "refresh": "wait_for"}

    def update() -> Status:
        with explained(client, f"update alerting monitor {name}"):
            client.transport.perform_request("PUT", f"{MONITORS}/{hit['_id']}", params=params, body=body)
        return "updated"

    return Step("alert monitor", name, "updated", run=update)


def plan_monitors(
    client: OpenSearch,
    prefix: str,
    rules: Sequence[AlertRule],
    indices: Sequence[str],
    destination_id: str | None = None,
) -> list[Step]:
    """One step per rule, and a removal for each monitor of ours whose rule is gone."""
    stored = _stored_monitors(client, prefix)
    steps = []
    for rule in rules:
        name = monitor_name(prefix, rule.id)
        steps.append(
            _plan_monitor(
                client, name, build_monitor(prefix, rule, indices, destination_id), stored.pop(name, [])
            )
        )
    for name, hits in sorted(stored.items()):
        for hit in hits:

            def remove(monitor_id: str = str(hit["_id"]), name: str = name) -> Status:
                with explained(client, f"delete alerting monitor {name}"):
                    client.transport.perform_request("DELETE", f"{MONITORS}/{monitor_id}")
                return "removed"

            steps.append(
                Step("alert monitor", name, "removed", "its rule is no longer configured", run=remove)
            )
    return steps


def _require_notifications(client: OpenSearch, option: str) -> None:
    if not has_plugin(client, *NOTIFICATIONS_PLUGINS):
        raise SetupError(
            f"{option} needs the OpenSearch Notifications plugin (opensearch-notifications), which this "
            "cluster does not run: install it, or leave the option out and read alerts with "
            "`audit-middleware alerts list` (monitors and alerts work without it)"
        )


def channel_id(prefix: str) -> str:
    """The id of the webhook channel setup manages, e.g. ``audit-alerts-webhook``."""
    return f"{validate_name(prefix, 'prefix')}-alerts-webhook"


def plan_channel(client: OpenSearch, prefix: str, webhook_url: str) -> Step:
    """A Notifications webhook channel for the monitors' actions (needs the Notifications plugin)."""
    _require_notifications(client, "--alert-webhook")
    config_id = channel_id(prefix)
    config = {
        "name": f"{prefix} audit alerts",
        "description": "audit-middleware alert monitors",
        "config_type": "webhook",
        "is_enabled": True,
        "webhook": {"url": webhook_url},
    }
    with explained(client, f"read notification channel {config_id}"):
        try:
            stored = client.transport.perform_request("GET", f"{CHANNELS}/{config_id}")
        except NotFoundError:
            stored = None
    configs = (stored or {}).get("config_list") or []
    if configs and contains(configs[0].get("config"), config):
        return Step("notification channel", config_id, "unchanged")

    def write() -> Status:
        with explained(client, f"write notification channel {config_id}"):
            if configs:
                client.transport.perform_request("PUT", f"{CHANNELS}/{config_id}", body={"config": config})
                return "updated"
            client.transport.perform_request(
                "POST", CHANNELS, body={"config_id": config_id, "config": config}
            )
        return "created"

    return Step("notification channel", config_id, "updated" if configs else "created", run=write)


def check_channel(client: OpenSearch, config_id: str) -> None:
    """Raise ``SetupError`` unless the Notifications channel ``config_id`` exists."""
    _require_notifications(client, "--alert-channel")
    with explained(client, f"read notification channel {config_id}"):
        try:
            client.transport.perform_request("GET", f"{CHANNELS}/{config_id}")
        except NotFoundError:
            raise SetupError(f"notification channel {config_id!r} does not exist") from None


# -- reading alerts back ------------------------------------------------------------------


def _alerts_of(client: OpenSearch, monitor_id: str, state: str) -> Iterator[dict[str, Any]]:
    start = 0
    while True:
        params = {
            "monitorId": monitor_id,
            "alertState": state,
            "size": _PAGE,
            "startIndex": start,
            "sortString": "start_time",
            "sortOrder": "desc",
        }
        with explained(client, "read the alerts"):
            answer = client.transport.perform_request("GET", f"{MONITORS}/alerts", params=params)
        alerts = answer.get("alerts") or []
        yield from alerts
        start += len(alerts)
        if not alerts or start >= int(answer.get("totalAlerts", 0)):
            return


def _alert(raw: Mapping[str, Any], prefix: str) -> Alert | None:
    content = raw.get("agg_alert_content") or {}
    bucket = content.get("bucket") or {}
    key = {str(name): str(value) for name, value in (bucket.get("key") or {}).items()}
    if "tenant" not in key:
        return None
    tenant = key.pop("tenant")
    trigger = _TRIGGER.fullmatch(str(raw.get("trigger_name", "")))
    rule_id = str(raw.get("monitor_name", "")).removeprefix(_monitor_prefix(prefix))
    value = (bucket.get("targets") or {}).get("value", bucket.get("doc_count", 0))
    hits = ((bucket.get("records") or {}).get("hits") or {}).get("hits") or []
    ids = tuple(str(hit.get("_source", {}).get("event", {}).get("id") or hit.get("_id")) for hit in hits)
    state: AlertState = raw.get("state", "ACTIVE")
    return Alert(
        id=str(raw["id"]),
        rule=rule_id,
        tenant=tenant,
        key=key,
        value=float(value),
        threshold=int(trigger.group("threshold")) if trigger else 0,
        window=trigger.group("window") if trigger else "",
        state=state,
        started_ms=int(raw.get("start_time") or 0),
        updated_ms=int(raw.get("last_notification_time") or raw.get("start_time") or 0),
        ended_ms=int(raw["end_time"]) if raw.get("end_time") else None,
        event_ids=ids,
        title=_TITLES.get(rule_id, ""),
        source="opensearch",
        details={"monitor_id": raw.get("monitor_id"), "error": raw.get("error_message")}
        if raw.get("error_message")
        else {},
    )


def list_alerts(
    client: OpenSearch, prefix: str, *, state: str = "ACTIVE", tenant: TenantSelector | None = None
) -> list[Alert]:
    """The alerts of our monitors (``state``: ACTIVE, COMPLETED, ACKNOWLEDGED, ERROR or ALL).

    The Alerting API cannot filter by tenant, so ``tenant`` is applied here (by its stored key).
    """
    key = None if tenant is None else tenant_key(tenant)
    found = []
    for name, hits in sorted(_stored_monitors(client, prefix).items()):
        for hit in hits:
            for raw in _alerts_of(client, str(hit["_id"]), state):
                alert = _alert({**raw, "monitor_name": raw.get("monitor_name", name)}, prefix)
                if alert is not None and (key is None or alert.tenant == key):
                    found.append(alert)
    found.sort(key=lambda alert: alert.started_ms, reverse=True)
    return found
