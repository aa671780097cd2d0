"""The alert rules (``model.alerts``) on the embedded store: windowed queries and alert state.

Several worker processes write one file and none of them sees every record, so nothing
is counted in memory: each evaluation asks the shared database which groups reach their
threshold in the window ending now (``events_by_time`` reads each tenant's rows of the
window, and its entries carry the action), and keeps what it found in the ``alerts`` table, as a monitor does:

* a group that fires and has no ACTIVE alert gets a new one (to be notified);
* a group that fires and has one updates its value and last record (no new alert);
* an ACTIVE alert whose group no longer fires becomes COMPLETED.

An evaluation runs under ``BEGIN IMMEDIATE``, so evaluations by several processes
follow one another, and a partial unique index allows one ACTIVE alert per rule,
tenant and key: an alert is raised once, whoever evaluates.

Notification is at least once: an alert is handed out for notification in the
transaction that raised it (with a claim that expires), marked notified when the
notifier returned, and handed out again to the next evaluation if it was not (up to
``MAX_NOTIFY_ATTEMPTS``).

This module is long because compiling a rule to SQL, the state transitions and the
notification claims are one transaction's work.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from audit_middleware.model.alerts import NO_USER, Alert, AlertRule
from audit_middleware.model.ids import uuid7
from audit_middleware.model.tenancy import TenantSelector, tenant_key
from audit_middleware.sqlite.maintenance import transaction
from audit_middleware.sqlite.schema import TENANT_KEYS

__all__ = [
    "MAX_NOTIFY_ATTEMPTS",
    "Evaluation",
    "compile_rule",
    "evaluate",
    "list_alerts",
    "mark_notified",
    "mark_notify_failed",
    "rule_parameters",
]

MAX_NOTIFY_ATTEMPTS: Final = 5
NOTIFY_CLAIM_MS: Final = 60_000  # a claimed notification is retried by others after this
SAMPLE_SIZE: Final = 10  # record ids kept with an alert

_KEY_SQL: Final[dict[str, str]] = {
    "user": (
        "coalesce(json_extract(e.document, '$.user.email'), json_extract(e.document, '$.user.name'), "
        f"json_extract(e.document, '$.user.id'), '{NO_USER}')"
    ),
    "ip": "json_extract(e.document, '$.source.ip')",
    "role": "role.value",
    "event": "e.event_id",
}
_MEASURE_SQL: Final[dict[str, str]] = {
    "records": "count(*)",
    "targets": "sum(coalesce(json_extract(e.document, '$.audit.target_count'), 1))",
}
_COLUMNS: Final = (
    "id, rule, tenant, group_key, state, value, threshold, window_ms, first_event_ms, last_event_ms, "
    "event_ids, started_ms, updated_ms, ended_ms"
)


@dataclass(frozen=True)
class _Firing:
    """One group of one rule that reaches its threshold now."""

    tenant: str
    key: dict[str, str]
    value: float
    first_ms: int
    last_ms: int
    event_ids: tuple[str, ...]

    @property
    def group_key(self) -> str:
        return json.dumps(self.key, separators=(",", ":"))  # the rule's key order: one text per group


@dataclass(frozen=True)
class Evaluation:
    """What one evaluation did: alerts raised, still firing, completed, and to notify."""

    raised: tuple[Alert, ...]
    updated: int
    completed: tuple[Alert, ...]
    to_notify: tuple[Alert, ...]


def compile_rule(rule: AlertRule) -> str:
    """The rule as one SQL query; its parameters are ``rule_parameters``.

    Rows: tenant, one column per group key, the measure, the first and last ``unix_ms``,
    and the group's event ids (comma-separated, the most recent first in practice).
    """
    keys = "".join(f"{_KEY_SQL[key]} AS k_{key}, " for key in rule.group_by)
    joins = (
        " JOIN json_each(e.document, '$.audit.permissions.added') AS role" if "role" in rule.group_by else ""
    )
    having_ip = f" WHERE {_KEY_SQL['ip']} IS NOT NULL" if "ip" in rule.group_by else ""
    group = ", ".join(["e.tenant", *(f"k_{key}" for key in rule.group_by)])
    return (
        f"SELECT e.tenant, {keys}{_MEASURE_SQL[rule.measure]} AS measure, "  # noqa: S608 - only fixed SQL
        "min(e.unix_ms), max(e.unix_ms), group_concat(e.event_id) "
        # events_by_time, tenant by tenant (found by one seek each): the window's entries,
        # whose action is tested on the index before a row is read
        f"FROM (SELECT * FROM events WHERE tenant IN ({TENANT_KEYS}) "
        f"AND action IN ({', '.join('?' * len(rule.actions))}) "
        "AND unix_ms >= ? AND unix_ms <= ? ORDER BY unix_ms DESC) AS e"
        f"{joins}{having_ip} GROUP BY {group} HAVING measure >= ?"
    )


def rule_parameters(rule: AlertRule, now_ms: int) -> list[Any]:
    """The parameters of ``compile_rule(rule)`` for the window ending at ``now_ms``."""
    return [*rule.actions, now_ms - rule.window_ms, now_ms, rule.threshold]


def _firing(conn: sqlite3.Connection, rule: AlertRule, now_ms: int) -> list[_Firing]:
    found = []
    for row in conn.execute(compile_rule(rule), rule_parameters(rule, now_ms)):
        tenant, *keys = row[: 1 + len(rule.group_by)]
        value, first_ms, last_ms, ids = row[1 + len(rule.group_by) :]
        found.append(
            _Firing(
                tenant=str(tenant),
                key={name: str(key) for name, key in zip(rule.group_by, keys, strict=True)},
                value=float(value),
                first_ms=int(first_ms),
                last_ms=int(last_ms),
                event_ids=tuple(str(ids).split(",")[:SAMPLE_SIZE]) if ids else (),
            )
        )
    return found


def _alert_of(row: Sequence[Any], rules: dict[str, AlertRule]) -> Alert:
    (alert_id, rule_id, tenant, group_key, state, value, threshold, window, _first, _last, ids) = row[:11]
    started, updated, ended = row[11:14]
    rule = rules.get(rule_id)
    minutes = int(window) // 60_000
    return Alert(
        id=str(alert_id),
        rule=str(rule_id),
        tenant=str(tenant),
        key=json.loads(group_key),
        value=float(value),
        threshold=int(threshold),
        window=rule.window if rule else (f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"),
        state=state,
        started_ms=int(started),
        updated_ms=int(updated),
        ended_ms=None if ended is None else int(ended),
        event_ids=tuple(json.loads(ids)),
        title=rule.title if rule else "",
        source="sqlite",
    )


def evaluate(conn: sqlite3.Connection, rules: Iterable[AlertRule], now_ms: int) -> Evaluation:
    """Evaluate ``rules`` at ``now_ms`` in one ``BEGIN IMMEDIATE`` transaction (``conn`` autocommits).

    Returns what changed; ``to_notify`` are the alerts this caller must now notify
    (and then ``mark_notified`` or ``mark_notify_failed``).
    """
    by_id = {rule.id: rule for rule in rules}
    with transaction(conn):
        raised: list[str] = []
        completed: list[str] = []
        updated = 0
        for rule in by_id.values():
            firing = {(f.tenant, f.group_key): f for f in _firing(conn, rule, now_ms)}
            active = {
                (str(tenant), str(group_key)): str(alert_id)
                for alert_id, tenant, group_key in conn.execute(
                    "SELECT id, tenant, group_key FROM alerts WHERE rule = ? AND state = 'ACTIVE'", (rule.id,)
                )
            }
            for key, group in firing.items():
                ids = json.dumps(list(group.event_ids))
                if key in active:
                    conn.execute(
                        "UPDATE alerts SET value = ?, last_event_ms = ?, event_ids = ?, updated_ms = ? "
                        "WHERE id = ?",
                        (group.value, group.last_ms, ids, now_ms, active[key]),
                    )
                    updated += 1
                    continue
                alert_id = uuid7(now_ms)
                conn.execute(
                    f"INSERT INTO alerts ({_COLUMNS}) "  # noqa: S608 - fixed columns
                    "VALUES (?, ?, ?, ?, 'ACTIVE', ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                    (
                        alert_id, rule.id, group.tenant, group.group_key, group.value, rule.threshold,
                        rule.window_ms, group.first_ms, group.last_ms, ids, now_ms, now_ms,
                    ),
                )  # fmt: skip
                raised.append(alert_id)
            for key, alert_id in active.items():
                if key not in firing:
                    conn.execute(
                        "UPDATE alerts SET state = 'COMPLETED', ended_ms = ?, updated_ms = ? WHERE id = ?",
                        (now_ms, now_ms, alert_id),
                    )
                    completed.append(alert_id)
        claimed = [
            str(row[0])
            for row in conn.execute(
                "SELECT id FROM alerts WHERE notified_ms IS NULL AND notify_attempts < ? "
                "AND (notify_claim_ms IS NULL OR notify_claim_ms < ?) ORDER BY started_ms",
                (MAX_NOTIFY_ATTEMPTS, now_ms - NOTIFY_CLAIM_MS),
            )
        ]
        conn.executemany(
            "UPDATE alerts SET notify_claim_ms = ?, notify_attempts = notify_attempts + 1 WHERE id = ?",
            [(now_ms, alert_id) for alert_id in claimed],
        )
        alerts = _fetch(conn, [*raised, *completed, *claimed], by_id)
    return Evaluation(
        raised=tuple(alerts[i] for i in raised),
        updated=updated,
        completed=tuple(alerts[i] for i in completed),
        to_notify=tuple(alerts[i] for i in claimed),
    )


def _fetch(conn: sqlite3.Connection, ids: Sequence[str], rules: dict[str, AlertRule]) -> dict[str, Alert]:
    found: dict[str, Alert] = {}
    unique = list(dict.fromkeys(ids))
    for start in range(0, len(unique), 500):
        chunk = unique[start : start + 500]
        sql = f"SELECT {_COLUMNS} FROM alerts WHERE id IN ({', '.join('?' * len(chunk))})"  # noqa: S608 - placeholders
        for row in conn.execute(sql, chunk):
            found[str(row[0])] = _alert_of(row, rules)
    return found


def mark_notified(conn: sqlite3.Connection, alert_ids: Iterable[str], now_ms: int) -> None:
    """Record that these alerts were delivered to the notifier."""
    with transaction(conn):
        conn.executemany(
            "UPDATE alerts SET notified_ms = ?, notify_error = NULL WHERE id = ?",
            [(now_ms, alert_id) for alert_id in alert_ids],
        )


def mark_notify_failed(conn: sqlite3.Connection, alert_id: str, error: str) -> None:
    """Record why notifying failed; the alert is handed out again once its claim expires."""
    with transaction(conn):
        conn.execute("UPDATE alerts SET notify_error = ? WHERE id = ?", (error[:1000], alert_id))


def list_alerts(
    conn: sqlite3.Connection,
    *,
    state: str = "ACTIVE",
    tenant: TenantSelector | None = None,
    rules: Iterable[AlertRule] = (),
    limit: int = 1000,
) -> list[Alert]:
    """Stored alerts, newest first (``state``: ACTIVE, COMPLETED or ALL); ``tenant``: only its alerts."""
    clauses, params = [], []
    if state != "ALL":
        clauses.append("state = ?")
        params.append(state)
    if tenant is not None:
        clauses.append("tenant = ?")
        params.append(tenant_key(tenant))
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = f"SELECT {_COLUMNS} FROM alerts {where} ORDER BY started_ms DESC, id DESC LIMIT ?"  # noqa: S608 - placeholders
    by_id = {rule.id: rule for rule in rules}
    return [_alert_of(row, by_id) for row in conn.execute(sql, [*params, limit])]
