"""The page's filters: read from the URL, turned into an ``AuditQuery``, written back into links.

Every filter lives in the query string, so a filtered view can be shared and reloaded:

=========  ==================================================================
``q``      search text (resource name, action, user email)
``action`` ``create``, ``update``, ``delete``, ``start-stop`` or one action id
``type``   a resource type id
``range``  ``24h``, ``7d``, ``30d`` or ``custom`` (with ``from`` / ``to``); absent: any time
``from``   custom range start, ``YYYY-MM-DDTHH:MM`` in ``tz`` (inclusive)
``to``     custom range end, in ``tz`` (exclusive; a date alone includes that day)
``user``   a user id or email
``project`` one project (inside the reader's allow-list)
``tz``     the IANA zone times are shown and custom dates read in (default UTC)
``reads``  ``1``: also show the records of reads of the log (hidden otherwise)
=========  ==================================================================

``tenant`` may appear too: it can only repeat the reader's own tenant (``access.narrow``).
Values outside these forms are a ``QueryError`` with a message for the reader.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from audit_middleware.query.model import MAX_TEXT_LENGTH, AuditQuery, QueryError
from audit_middleware.reads import without_reads
from audit_middleware.viewer.access import Access, narrow

__all__ = ["RANGES", "ViewFilters"]

RANGES: dict[str, str] = {"": "Any time", "24h": "Last 24 hours", "7d": "Last 7 days", "30d": "Last 30 days"}
CUSTOM = "custom"
_MAX_VALUE = 256


def _one(params: Mapping[str, Sequence[str]], name: str, limit: int = _MAX_VALUE) -> str:
    values = params.get(name) or [""]
    value = values[0].strip()
    if len(value) > limit:
        raise QueryError(f"the {name!r} filter is limited to {limit} characters")
    return value


@dataclass(frozen=True, slots=True)
class ViewFilters:
    """The filters of one view, as text from the URL (empty: not set)."""

    q: str = ""
    action: str = ""
    type: str = ""
    range: str = ""
    start: str = ""
    end: str = ""
    user: str = ""
    project: str = ""
    tz: str = ""
    reads: bool = False
    tenant: str = ""

    @classmethod
    def from_params(cls, params: Mapping[str, Sequence[str]]) -> ViewFilters:
        """The filters named in a parsed query string (or form); unknown names are ignored."""
        found = cls(
            q=_one(params, "q", MAX_TEXT_LENGTH),
            action=_one(params, "action"),
            type=_one(params, "type"),
            range=_one(params, "range"),
            start=_one(params, "from"),
            end=_one(params, "to"),
            user=_one(params, "user"),
            project=_one(params, "project"),
            tz=_one(params, "tz"),
            reads=_one(params, "reads") in ("1", "on", "true"),
            tenant=_one(params, "tenant"),
        )
        if found.range and found.range != CUSTOM and found.range not in RANGES:
            raise QueryError("the date range must be the last 24 hours, 7 days, 30 days, or a custom range")
        if found.tz and found.tz != "UTC":
            try:
                ZoneInfo(found.tz)
            except (ZoneInfoNotFoundError, ValueError):
                raise QueryError(f"unknown timezone {found.tz!r}") from None
        return found

    @property
    def zone(self) -> str:
        """The IANA zone of the view (UTC unless one was chosen)."""
        return self.tz or "UTC"

    @property
    def is_live(self) -> bool:
        """Whether new entries can still match: not when a custom range ends."""
        return not (self.range == CUSTOM and self.end)

    def query(
        self, access: Access, *, page_size: int, cursor: str | None = None, now: datetime | None = None
    ) -> AuditQuery:
        """The store query of this view for ``access``; a URL can only narrow the access."""
        projects, project = narrow(access, self.tenant, self.project)
        custom = self.range == CUSTOM
        query = AuditQuery.build(
            access.tenant,
            action=self.action or None,
            resource_type=self.type or None,
            user=self.user or None,
            project=project,
            projects=projects,
            since=self.range if self.range and not custom else None,
            start=self.start if custom and self.start else None,
            end=self.end if custom and self.end else None,
            timezone_name=self.zone,
            search=self.q or None,
            page_size=page_size,
            cursor=cursor,
            now=now,
        )
        return query if self.reads else without_reads(query)

    def params(self) -> list[tuple[str, str]]:
        """The set filters as query-string pairs, in a stable order (the URL of this view)."""
        pairs: list[tuple[str, str]] = []
        for item in fields(self):
            value = getattr(self, item.name)
            name = {"start": "from", "end": "to"}.get(item.name, item.name)
            if item.name in ("start", "end") and self.range != CUSTOM:
                continue
            if value is True:
                pairs.append((name, "1"))
            elif value:
                pairs.append((name, str(value)))
        return pairs

    def query_string(self, **extra: str | None) -> str:
        """``?...`` for this view plus ``extra`` pairs (None values left out); ``""`` when empty."""
        pairs = self.params() + [(name, value) for name, value in extra.items() if value]
        return "?" + urlencode(pairs) if pairs else ""

    def cleared(self) -> ViewFilters:
        """The same view without any filter (the time zone is kept)."""
        return replace(ViewFilters(), tz=self.tz)

    @property
    def any_set(self) -> bool:
        """Whether any filter narrows the view."""
        return self.cleared() != self
