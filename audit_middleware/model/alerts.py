"""The alert rules, defined once: what each one counts, how it groups, and when it fires.

Two compilers read these definitions: ``opensearch.monitors`` turns each rule into an
OpenSearch Alerting bucket-level monitor, and ``sqlite.alerts`` into a windowed query on
the embedded store. Both keep the meaning written here:

* a rule looks at records whose ``event.action`` is one of ``actions``, with
  ``@timestamp`` in the last ``window`` (ending at the moment of evaluation);
* it groups them by tenant (the stored key ``organization.id``, see ``model.tenancy``;
  records without one under ``-``, which no tenant id is stored as) and by the rule's
  ``group_by`` keys (see ``GROUP_KEYS``), so one tenant's burst never hides behind
  another's. ``Alert.tenant`` is that stored key: the tenant id itself, except for the
  ids stored as a hashed key (over-long ones, say);
* a group fires when its measure reaches ``threshold``: the number of records, or with
  ``measure="targets"`` the sum of ``audit.target_count`` (a bulk delete of 50 targets
  counts 50; older records without the field count 1);
* an alert stays ``ACTIVE`` while its group keeps reaching the threshold (more records
  update it, they raise no new alert) and becomes ``COMPLETED`` once it no longer does.

>>> rules = default_rules(failed_login_threshold=3, failed_login_window="5m")
>>> [(rule.id, rule.threshold, rule.window) for rule in rules][:2]
[('failed_logins_per_user', 3, '5m'), ('failed_logins_per_ip', 3, '5m')]
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Final, Literal

from audit_middleware.errors import AuditValidationError
from audit_middleware.model.ids import check_identifier

__all__ = [
    "GROUP_KEYS",
    "Alert",
    "AlertRule",
    "GroupKey",
    "apply_overrides",
    "default_rules",
    "parse_override",
    "window_ms",
]

GroupKey = Literal["user", "ip", "role", "event"]
Measure = Literal["records", "targets"]
AlertState = Literal["ACTIVE", "COMPLETED", "ACKNOWLEDGED", "ERROR", "DELETED"]

GROUP_KEYS: Final[Mapping[str, str]] = {
    "user": "the actor: user.email, else user.name, else user.id, else '(none)'",
    "ip": "source.ip (records without one are not counted)",
    "role": "each role in audit.permissions.added (records granting none are not counted)",
    "event": "event.id: one group per record",
}
"""The keys a rule may group by besides the tenant, and what each one reads."""

NO_USER: Final = "(none)"
"""The ``user`` key of records whose actor has no email, name or id."""

_WINDOW = re.compile(r"([1-9][0-9]{0,5})(m|h)")
_WINDOW_UNIT_MS = {"m": 60_000, "h": 3_600_000}
_SEVERITIES = frozenset("12345")


def window_ms(window: str) -> int:
    """A window such as ``"10m"`` or ``"2h"`` in milliseconds; raises for anything else."""
    match = _WINDOW.fullmatch(window) if isinstance(window, str) else None
    if match is None:
        raise AuditValidationError(f"alert window {window!r} is not like '10m' or '2h' (minutes or hours)")
    return int(match.group(1)) * _WINDOW_UNIT_MS[match.group(2)]


@dataclass(frozen=True)
class AlertRule:
    """One alert rule (see the module docstring for its meaning)."""

    id: str
    title: str
    actions: tuple[str, ...]
    group_by: tuple[GroupKey, ...]
    threshold: int
    window: str
    measure: Measure = "records"
    severity: str = "2"
    """OpenSearch Alerting's severity, 1 (highest) to 5."""

    def __post_init__(self) -> None:
        check_identifier(self.id, "alert rule id")
        object.__setattr__(self, "actions", tuple(self.actions))
        object.__setattr__(self, "group_by", tuple(self.group_by))
        if not self.actions:
            raise AuditValidationError(f"alert rule {self.id}: name at least one action")
        for action in self.actions:
            check_identifier(action, f"alert rule {self.id}: action")
        unknown = [key for key in self.group_by if key not in GROUP_KEYS]
        if unknown or len(set(self.group_by)) != len(self.group_by):
            raise AuditValidationError(
                f"alert rule {self.id}: group_by {list(self.group_by)} must name distinct keys "
                f"of {sorted(GROUP_KEYS)}"
            )
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, int) or self.threshold < 1:
            raise AuditValidationError(f"alert rule {self.id}: threshold must be an integer of at least 1")
        window_ms(self.window)
        if self.measure not in ("records", "targets"):
            raise AuditValidationError(f"alert rule {self.id}: measure must be 'records' or 'targets'")
        if self.severity not in _SEVERITIES:
            raise AuditValidationError(f"alert rule {self.id}: severity must be '1' to '5'")

    @property
    def window_ms(self) -> int:
        """The window in milliseconds."""
        return window_ms(self.window)

    @property
    def condition(self) -> str:
        """The firing condition in words, e.g. ``5 records in 10m``."""
        unit = "targets" if self.measure == "targets" else "records"
        return f"{self.threshold} {unit} in {self.window}"

    def with_limits(self, threshold: int | None = None, window: str | None = None) -> AlertRule:
        """The same rule with another threshold and/or window."""
        return replace(
            self,
            threshold=self.threshold if threshold is None else threshold,
            window=self.window if window is None else window,
        )


def default_rules(
    *,
    failed_login_threshold: int = 5,
    failed_login_window: str = "10m",
    mass_deletion_threshold: int = 20,
    mass_deletion_window: str = "10m",
    window: str = "10m",
) -> tuple[AlertRule, ...]:
    """The four alerts of the product: failed logins (per user, per IP), mass deletion,
    permission escalation and new API tokens.

    ``window`` is how long an escalation or token alert stays ``ACTIVE`` (they fire on
    one record), and how long its group is watched for more.
    """
    return (
        AlertRule(
            "failed_logins_per_user",
            "Multiple failed logins for one account",
            ("login_failed",),
            ("user",),
            failed_login_threshold,
            failed_login_window,
        ),
        AlertRule(
            "failed_logins_per_ip",
            "Multiple failed logins from one IP address",
            ("login_failed",),
            ("ip",),
            failed_login_threshold,
            failed_login_window,
        ),
        AlertRule(
            "mass_deletion",
            "Mass deletion by one actor",
            ("delete",),
            ("user",),
            mass_deletion_threshold,
            mass_deletion_window,
            measure="targets",
        ),
        AlertRule(
            "permission_escalation",
            "Role granted",
            ("permissions_changed",),
            ("user", "role"),
            1,
            window,
            severity="1",
        ),
        AlertRule(
            "new_api_token", "New API token", ("token_created",), ("user", "event"), 1, window, severity="3"
        ),
    )


def parse_override(text: str) -> tuple[str, int | None, str | None]:
    """Read ``RULE=N/WINDOW``, ``RULE=N``, ``RULE=/WINDOW`` or ``RULE=off`` (threshold ``None`` and
    window ``"off"``: the rule is dropped).

    >>> parse_override("mass_deletion=50/5m")
    ('mass_deletion', 50, '5m')
    >>> parse_override("new_api_token=off")
    ('new_api_token', None, 'off')
    """
    rule, sep, limits = text.partition("=")
    rule, limits = rule.strip(), limits.strip()
    if not sep or not rule or not limits:
        raise AuditValidationError(f"alert setting {text!r} is not like RULE=N/WINDOW, RULE=N or RULE=off")
    if limits == "off":
        return rule, None, "off"
    count, _, window = limits.partition("/")
    try:
        threshold = int(count) if count else None
    except ValueError:
        raise AuditValidationError(f"alert setting {text!r}: {count!r} is not a whole number") from None
    if window:
        window_ms(window)
    return rule, threshold, window or None


def apply_overrides(
    rules: Sequence[AlertRule], overrides: Iterable[tuple[str, int | None, str | None]]
) -> tuple[AlertRule, ...]:
    """``rules`` with thresholds and windows changed, or rules dropped (window ``"off"``)."""
    by_id = {rule.id: rule for rule in rules}
    for rule_id, threshold, window in overrides:
        if rule_id not in by_id:
            raise AuditValidationError(f"no alert rule {rule_id!r}: the rules are {sorted(by_id)}")
        if window == "off":
            del by_id[rule_id]
        else:
            by_id[rule_id] = by_id[rule_id].with_limits(threshold, window)
    return tuple(by_id.values())


@dataclass(frozen=True)
class Alert:
    """One alert raised by a rule, from either store.

    ``key`` holds the rule's group keys (``{"user": "ann@example.com"}``,
    ``{"ip": "203.0.113.9"}``, ``{"user": ..., "role": "admin"}``); ``value`` the count
    or target sum that reached ``threshold``; ``event_ids`` some of the records behind it.
    """

    id: str
    rule: str
    tenant: str
    key: Mapping[str, str]
    value: float
    threshold: int
    window: str
    state: AlertState
    started_ms: int
    updated_ms: int
    ended_ms: int | None = None
    event_ids: tuple[str, ...] = ()
    title: str = ""
    source: Literal["sqlite", "opensearch"] = "sqlite"
    details: Mapping[str, object] = field(default_factory=dict)

    def describe(self) -> str:
        """One line for people: ``Multiple failed logins [acme] user=ann@x.com: 6 (>= 5 in 10m), ACTIVE``."""
        keys = ", ".join(f"{name}={value}" for name, value in self.key.items())
        value = int(self.value) if float(self.value).is_integer() else self.value
        return (
            f"{self.title or self.rule} [{self.tenant}] {keys}: {value} "
            f"(>= {self.threshold} in {self.window}), {self.state}"
        )

    def to_json(self) -> dict[str, object]:
        """The alert as a JSON object (what a webhook receives)."""
        return {
            "id": self.id,
            "rule": self.rule,
            "title": self.title,
            "tenant": self.tenant,
            "key": dict(self.key),
            "value": self.value,
            "threshold": self.threshold,
            "window": self.window,
            "state": self.state,
            "started_ms": self.started_ms,
            "updated_ms": self.updated_ms,
            "ended_ms": self.ended_ms,
            "event_ids": list(self.event_ids),
            "source": self.source,
            **({"details": dict(self.details)} if self.details else {}),
        }
