"""The query model: filters, date ranges, free text, newest-first pagination by opaque cursor.

Every query is scoped to one tenant: the application's authorisation decides it, never
a request parameter alone. A tenant that does not exist simply matches nothing.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from audit_middleware.errors import AuditValidationError
from audit_middleware.model.actions import CATALOG, FILTER_GROUPS
from audit_middleware.model.event import OUTCOMES, AuditEvent
from audit_middleware.model.tenancy import NO_TENANT, NoProject, NoTenant, ProjectSelector, TenantSelector
from audit_middleware.model.timestamps import unix_ms

MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50
MAX_TEXT_LENGTH = 200
MAX_LIST_VALUES = 500  # values in one allow- or deny-list (projects, excluded actions)
PRESETS: dict[str, timedelta] = {
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
_CURSOR_MS_LIMIT = 2**53  # beyond any real timestamp; keeps SQLite and JSON integers exact
_GROUP_ALIASES = {"start/stop": "start-stop", "start_stop": "start-stop", "startstop": "start-stop"}
_RELATIVE = re.compile(r"^(\d{1,4})([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class QueryError(AuditValidationError):
    """A filter could not be understood; the message says which and how to write it."""


def check_tenant(tenant: object) -> TenantSelector:
    """``tenant`` when it is a tenant id or ``NO_TENANT``; a QueryError otherwise."""
    if isinstance(tenant, NoTenant) or (isinstance(tenant, str) and tenant):
        return tenant
    raise QueryError("a tenant is required: every query is scoped to one tenant (or NO_TENANT)")


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ends: the last event's time and id (the sort keys, newest first)."""

    unix_ms: int
    event_id: str

    def encode(self) -> str:
        """An opaque, URL-safe token."""
        raw = json.dumps([self.unix_ms, self.event_id], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """Parse a token made by ``encode``; anything else is a QueryError."""
        try:
            padded = token + "=" * (-len(token) % 4)
            unix_ms, event_id = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        except (ValueError, TypeError, binascii.Error, UnicodeEncodeError):
            raise QueryError("invalid cursor: pass back the next_cursor of a previous page") from None
        if (
            not isinstance(unix_ms, int)
            or isinstance(unix_ms, bool)
            or not -_CURSOR_MS_LIMIT < unix_ms < _CURSOR_MS_LIMIT
            or not isinstance(event_id, str)
            or len(event_id) > 64
        ):
            raise QueryError("invalid cursor: pass back the next_cursor of a previous page")
        return cls(unix_ms, event_id)

    @classmethod
    def after(cls, event: AuditEvent) -> Cursor:
        """The cursor pointing just past ``event``."""
        return cls(event.unix_ms, event.id)


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """What to find. Build it with ``AuditQuery.build(...)`` to parse user input.

    Semantics every store implements (``tests/query/test_contract.py`` checks them):

    * ``tenant`` scopes everything: a tenant id, or ``NO_TENANT`` for the records made
      without a tenant (no string selects those, not even ``"-"``, which is a tenant id
      like any other). An unknown tenant matches nothing. Every store looks the tenant up
      by its stored key (``model.tenancy.tenant_key``), so over-long ids work alike.
    * ``start`` is inclusive and ``end`` exclusive, both UTC.
    * ``actions`` holds action ids (groups such as ``"start-stop"`` are expanded by
      ``build``); ``resource_types`` resource type ids. Several values mean "any of".
    * ``project`` is one project id; ``projects`` an allow-list (any of; ``None``: no
      restriction, an empty tuple: nothing matches). Both apply when both are set, so
      a project asked for can only narrow what the allow-list permits. ``NO_PROJECT``
      stands for the records made outside any project (no string does, not even
      ``"-"``); project ids are looked up by their stored key, as tenants are.
    * ``exclude_actions`` leaves those action ids out (the viewer hides reads of the
      log itself this way).
    * ``user`` matches a user id exactly or an email case-insensitively, of the person
      who acted or of the identity acted as (impersonation).
    * ``text`` is free text matched case-insensitively, by word prefix, against the
      resource name, the action (id and label) and the user emails: ``"prod dat"``
      finds "Prod Database", ``"login f"`` finds Login Failed, ``"ann@ex"`` finds
      ann@example.com. It is always a value to look for, never query syntax: text
      without any letter or digit matches nothing.
    * Results are newest first: ``@timestamp`` descending, ties by ``event.id``
      descending; ``cursor`` continues after the last event of a previous page.

    >>> query = AuditQuery.build("acme", action="start-stop", since="7d", search="web")
    >>> query.actions
    ('start', 'stop', 'restart')
    """

    tenant: TenantSelector
    actions: tuple[str, ...] = ()
    resource_types: tuple[str, ...] = ()
    user: str | None = None
    project: ProjectSelector | None = None
    projects: tuple[ProjectSelector, ...] | None = None
    exclude_actions: tuple[str, ...] = ()
    outcome: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    text: str | None = None
    page_size: int = DEFAULT_PAGE_SIZE
    cursor: Cursor | None = None

    def __post_init__(self) -> None:
        check_tenant(self.tenant)
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise QueryError(f"page size must be between 1 and {MAX_PAGE_SIZE}, not {self.page_size}")
        if self.outcome is not None and self.outcome not in OUTCOMES:
            raise QueryError(f"outcome must be one of {sorted(OUTCOMES)}, not {self.outcome!r}")
        for moment in (self.start, self.end):
            if moment is not None and moment.utcoffset() != timedelta(0):
                raise QueryError("start and end must be timezone-aware UTC datetimes (use AuditQuery.build)")
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise QueryError("the start of the date range must be before its end")
        if self.text is not None and len(self.text) > MAX_TEXT_LENGTH:
            raise QueryError(f"search text is limited to {MAX_TEXT_LENGTH} characters")
        if self.project is not None and not _is_project(self.project):
            raise QueryError("project must be a non-empty project id or NO_PROJECT")
        for name in ("projects", "exclude_actions"):
            values = getattr(self, name)
            if values is None:
                continue
            valid = _is_project if name == "projects" else _is_id
            if not isinstance(values, tuple) or not all(valid(v) for v in values):
                raise QueryError(f"{name} must be a tuple of non-empty ids")
            if len(values) > MAX_LIST_VALUES:
                raise QueryError(f"{name} is limited to {MAX_LIST_VALUES} values, not {len(values)}")

    @property
    def start_ms(self) -> int | None:
        """``start`` in epoch milliseconds (rounded up: the bound is inclusive)."""
        return None if self.start is None else unix_ms(self.start, round_up=True)

    @property
    def end_ms(self) -> int | None:
        """``end`` in epoch milliseconds (rounded up: the bound is exclusive)."""
        return None if self.end is None else unix_ms(self.end, round_up=True)

    def describe(self) -> dict[str, Any]:
        """The filters that are set, as JSON-ready values (for the export's own audit record).

        >>> AuditQuery.build("acme", action="delete").describe()
        {'tenant': 'acme', 'actions': ['delete']}
        """
        described: dict[str, Any] = {"tenant": None if self.tenant is NO_TENANT else self.tenant}
        if self.actions:
            described["actions"] = list(self.actions)
        if self.resource_types:
            described["resource_types"] = list(self.resource_types)
        for name in ("user", "outcome", "text"):
            value = getattr(self, name)
            if value is not None:
                described[name] = value
        if self.project is not None:
            described["project"] = _described_project(self.project)
        if self.projects is not None:
            described["projects"] = [_described_project(project) for project in self.projects]
        if self.exclude_actions:
            described["exclude_actions"] = list(self.exclude_actions)
        if self.start is not None:
            described["from"] = self.start.isoformat().replace("+00:00", "Z")
        if self.end is not None:
            described["to"] = self.end.isoformat().replace("+00:00", "Z")
        return described

    def next_page(self, cursor: Cursor | None) -> AuditQuery:
        """The same query, continuing after ``cursor``."""
        return replace(self, cursor=cursor)

    @classmethod
    def build(
        cls,
        tenant: TenantSelector,
        *,
        action: str | Iterable[str] | None = None,
        resource_type: str | Iterable[str] | None = None,
        user: str | None = None,
        project: ProjectSelector | None = None,
        projects: Iterable[ProjectSelector] | None = None,
        exclude_actions: Iterable[str] = (),
        outcome: str | None = None,
        since: str | None = None,
        start: str | datetime | None = None,
        end: str | datetime | None = None,
        timezone_name: str | None = None,
        search: str | None = None,
        page_size: int | str = DEFAULT_PAGE_SIZE,
        cursor: str | None = None,
        now: datetime | None = None,
    ) -> AuditQuery:
        """Parse user-facing filter values, with clear errors.

        ``since`` is a preset (``24h``, ``7d``, ``30d``) or any ``<n>m|h|d|w``; ``start`` /
        ``end`` are ISO 8601 dates or datetimes, read in ``timezone_name`` (an IANA name,
        default UTC) when they carry no offset. A date alone as ``end`` includes that
        whole day (``--from 2026-11-01 --to 2026-11-30`` is all of November). ``action``
        takes action ids or labels (``login_failed``, ``"Login Failed"``), the filter
        groups ``create``, ``update``, ``delete``, ``start-stop``, or ``all`` (no filter).
        ``projects`` is the allow-list (``None``: every project; ``NO_PROJECT`` in it or
        as ``project``: the records made outside any project); ``exclude_actions`` takes
        action ids.
        """
        zone = _zone(timezone_name)
        moment = now or datetime.now(timezone.utc)
        begin = _parse_datetime(start, zone, "from") if start is not None else None
        finish = _parse_datetime(end, zone, "to", whole_day=True) if end is not None else None
        if since is not None:
            if begin is not None:
                raise QueryError("give either --since or --from, not both")
            begin = moment - _parse_since(since)
        search_text = search.strip() if search is not None else None
        try:
            size = int(page_size)
        except (TypeError, ValueError):
            raise QueryError(f"page size must be a number, not {page_size!r}") from None
        return cls(
            tenant=tenant,
            actions=_expand_actions(action),
            resource_types=_names(resource_type),
            user=user.strip() or None if user else None,
            project=project or None,
            projects=_ids(projects),
            exclude_actions=tuple(str(action) for action in _ids(exclude_actions) or ()),
            outcome=outcome or None,
            start=begin,
            end=finish,
            text=search_text or None,
            page_size=size,
            cursor=Cursor.decode(cursor) if cursor else None,
        )


@dataclass(frozen=True, slots=True)
class BoundedCount:
    """A count that stops at ``LIMIT``: exact below it, else "at least" (``AuditStore.count_bounded``).

    >>> str(BoundedCount(120, exact=True)), str(BoundedCount(10_000, exact=False))
    ('120', '10,000+')
    """

    LIMIT: ClassVar[int] = 10_000

    value: int
    exact: bool

    @classmethod
    def of(cls, counted: int, limit: int = LIMIT) -> BoundedCount:
        """``counted`` matches (or more, when ``counted`` reached ``limit``), capped at ``limit``."""
        return cls(min(counted, limit), counted < limit)

    def __str__(self) -> str:
        return f"{self.value:,}" if self.exact else f"{self.value:,}+"


@dataclass(frozen=True, slots=True)
class Page:
    """One page of results, newest first, and the cursor of the next page (None at the end)."""

    events: list[AuditEvent]
    next_cursor: str | None


def _names(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else list(value)
    return tuple(dict.fromkeys(part.strip() for item in items for part in item.split(",") if part.strip()))


def _ids(value: ProjectSelector | Iterable[ProjectSelector] | None) -> tuple[ProjectSelector, ...] | None:
    """An id list as given (a lone string is one id, not its characters), without repeats."""
    if value is None:
        return None
    items = [value] if isinstance(value, str | NoProject) else list(value)
    return tuple(dict.fromkeys(item if isinstance(item, NoProject) else str(item) for item in items if item))


def _is_id(value: object) -> bool:
    return isinstance(value, str) and bool(value)


def _is_project(value: object) -> bool:
    return isinstance(value, NoProject) or _is_id(value)


def _described_project(project: ProjectSelector) -> str | None:
    """A project as JSON: its id, or null for ``NO_PROJECT``."""
    return None if isinstance(project, NoProject) else project


def _expand_actions(value: str | Iterable[str] | None) -> tuple[str, ...]:
    expanded: list[str] = []
    names = _names(value)
    labels = {action.label.lower(): action.id for action in CATALOG}
    for name in names:
        lowered = name.lower()
        group = _GROUP_ALIASES.get(lowered, lowered)
        if group == "all":
            return ()  # "all actions" is no action filter, whatever else was given
        if group in FILTER_GROUPS:
            expanded.extend(FILTER_GROUPS[group])
        elif name in CATALOG:
            expanded.append(name)
        elif lowered in labels:
            expanded.append(labels[lowered])
        elif lowered.replace(" ", "_") in CATALOG:
            expanded.append(lowered.replace(" ", "_"))
        else:
            known = sorted({a.id for a in CATALOG} | set(FILTER_GROUPS) | {"all"})
            raise QueryError(f"unknown action {name!r}; use one of: {', '.join(known)}")
    return tuple(dict.fromkeys(expanded))


def _zone(name: str | None) -> tzinfo:
    if not name or name.upper() == "UTC":
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise QueryError(f"unknown timezone {name!r}: use an IANA name such as Europe/Berlin") from None


def _parse_since(value: str) -> timedelta:
    text = value.strip().lower()
    if text in PRESETS:
        return PRESETS[text]
    match = _RELATIVE.match(text)
    if not match:
        raise QueryError(f"invalid --since {value!r}: use 24h, 7d, 30d or <number>m|h|d|w")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _parse_datetime(value: str | datetime, zone: tzinfo, what: str, *, whole_day: bool = False) -> datetime:
    """A UTC datetime from ISO 8601 text; with ``whole_day`` a bare date means the day's end."""
    invalid = f"invalid --{what} date {value!r}: use ISO 8601, e.g. 2026-11-25 or 2026-11-25T14:30:00+01:00"
    if isinstance(value, datetime):
        moment = value
    else:
        text = value.strip()
        try:
            if whole_day and _is_date_only(text):
                moment = datetime.fromisoformat(text) + timedelta(days=1)
            else:
                moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        except (ValueError, OverflowError):
            raise QueryError(invalid) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    try:
        return moment.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        raise QueryError(f"--{what} date {value!r} is out of range") from None


def _is_date_only(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True
