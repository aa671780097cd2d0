"""The Audit Logs page, framework-neutral: routes, access, the reads it records, and the answers.

``AuditViewer.handle(ViewerRequest) -> ViewerResponse`` serves, below the mount path:

==================  ====  ==============================================================
``/``               GET   the page: filters, the newest entries, "load more", live view
``/entries``        GET   (from the page's script) rows for a filter change, the next
                          page (``cursor``) or a live poll (``live=1&since=MS``)
``/entries/ID``     GET   one entry's details (a page; a fragment for the script)
``/export``         POST  CSV of exactly the filtered entries, streamed, no size cap
``/static/NAME``    GET   the script and the stylesheet
==================  ====  ==============================================================

Access: a valid ``token`` parameter (``ViewerTokens``) or else the host app's
``authorize`` callback decides the tenant and projects; a URL can only narrow them.

Reads are recorded (``reads.record_read``) into the sink of the installed configuration
unless one is given: every page of entries shown (``audit_viewed``, with the filters),
every entry opened (``audit_viewed`` of that entry) and every export
(``audit_exported``), each with the reader's address and user agent. Live polls are not
recorded one by one: they only return entries of the last few minutes, newer than the
page that started them (which was recorded). Those records are left out of the list and
the live feed unless the reader ticks "Show reads of this log".

CSRF: the export (the one POST) needs the double-submit token of the page (a cookie and
the same value in the form) or a valid viewer token in the form, and no request but a
navigation is served to another site (``Sec-Fetch-Site``, else ``Origin``). The script's
requests carry ``X-Audit-Viewer: 1``, which a cross-site page cannot send without a CORS
preflight the viewer never grants.

This module is long because the five routes share one access check, one error page and
one way of recording reads, and splitting them would spread that contract over files.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from audit_middleware.capture import context as capture_context
from audit_middleware.config import get_config
from audit_middleware.errors import AuditError, AuditValidationError
from audit_middleware.model.event import RequestFacts
from audit_middleware.model.tenancy import NO_PROJECT
from audit_middleware.model.timestamps import from_unix_ms
from audit_middleware.processing.redaction import Redactor
from audit_middleware.query.model import MAX_PAGE_SIZE, AuditQuery, BoundedCount, Page, QueryError
from audit_middleware.query.store import AuditStore
from audit_middleware.reads import export_stream_audited, record_read
from audit_middleware.sinks.base import Sink
from audit_middleware.viewer import render as views
from audit_middleware.viewer.access import Access, Authorize, ForbiddenError
from audit_middleware.viewer.filters import CUSTOM, RANGES, ViewFilters
from audit_middleware.viewer.http import ViewerRequest, ViewerResponse
from audit_middleware.viewer.sources import store_for_sink
from audit_middleware.viewer.tokens import InvalidViewerTokenError, ViewerTokens

__all__ = ["AuditViewer"]

logger = logging.getLogger(__name__)

CSRF_COOKIE = "audit_viewer_csrf"
SCRIPT_HEADER = "x-audit-viewer"
LIVE_WINDOW = timedelta(minutes=10)  # how far back an unrecorded live poll may read
_ENTRY_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_HTML = "text/html; charset=utf-8"


@dataclass(frozen=True, slots=True)
class _Reader:
    """The access of one request, and whether a viewer token granted it (then links carry it)."""

    access: Access
    token: str | None


class _Refused(Exception):  # noqa: N818 - control flow inside handle(), never leaves it
    """Answer the request with an error page."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


class AuditViewer:
    """The embeddable Audit Logs page over an ``AuditStore``.

    ``authorize(native_request) -> Access | None`` is the host app's answer to "which
    tenant (and projects) may this user see"; None refuses. ``store`` defaults to the
    store of the configured sink (SQLite file or OpenSearch); ``sink`` (where reads are
    recorded) to the configured sink. ``tokens`` enables signed viewer links
    (``issue_token``). ``frame_ancestors`` lists the origins allowed to embed the page
    in a frame (default: only the app itself). ``poll_interval`` is the live view's
    period in seconds. ``resource_types`` adds labels for the resource type filter.

    >>> from audit_middleware import Actor
    >>> viewer = AuditViewer(authorize=lambda request: Access("acme", Actor(id="u1")))
    """

    def __init__(
        self,
        *,
        authorize: Authorize | None = None,
        store: AuditStore | None = None,
        sink: Sink | None = None,
        tokens: ViewerTokens | None = None,
        redactor: Redactor | None = None,
        title: str = "Audit Logs",
        page_size: int = 50,
        poll_interval: float = 5.0,
        frame_ancestors: Sequence[str] = (),
        resource_types: Mapping[str, str] | None = None,
    ) -> None:
        if authorize is None and tokens is None:
            raise AuditValidationError("AuditViewer needs authorize= (the app's access check) or tokens=")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise AuditValidationError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        if poll_interval < 0.2:
            raise AuditValidationError("poll_interval must be at least 0.2 seconds")
        for origin in frame_ancestors:
            if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:\d{1,5})?", origin):
                raise AuditValidationError(
                    f"frame_ancestors takes origins like https://app.example, not {origin!r}"
                )
        self._authorize = authorize
        self._store = store
        self._sink = sink
        self._redactor = redactor
        self.tokens = tokens
        self.title = title
        self.page_size = page_size
        self.poll_interval = poll_interval
        self._frame_ancestors = " ".join(("'self'", *frame_ancestors))
        self._resource_types = dict(resource_types or {})

    # -- set-up ------------------------------------------------------------------------

    @property
    def store(self) -> AuditStore:
        """The store read: the one given, else the store of the configured sink (opened once)."""
        if self._store is None:
            self._store = store_for_sink(get_config().sink)
        return self._store

    def _read_sink(self) -> tuple[Sink, Redactor]:
        if self._sink is not None:
            return self._sink, self._redactor or Redactor()
        config = get_config()
        return config.sink, self._redactor or config.redactor

    def issue_token(self, access: Access, *, ttl: timedelta | None = None) -> str:
        """A signed viewer token for ``access`` (needs ``tokens=``); put it in the URL as ``?token=``."""
        if self.tokens is None:
            raise AuditValidationError("issue_token needs AuditViewer(tokens=ViewerTokens(secret))")
        return self.tokens.issue(
            access.tenant, access.actor, projects=access.projects, tenant_name=access.tenant_name, ttl=ttl
        )

    # -- the one entry point -----------------------------------------------------------

    def handle(self, request: ViewerRequest) -> ViewerResponse:  # noqa: PLR0911 - one answer per failure
        """Answer one request below the mount path."""
        if request.path == "":  # the page's relative links need the trailing slash
            query = "?" + urlencode(dict(request.query), doseq=True) if request.query else ""
            return ViewerResponse(308, [("Location", f"{request.base}/{query}"), *self._headers()])
        if request.path.startswith("/static/") and request.method == "GET":
            return self._static(request.path.removeprefix("/static/"))
        try:
            route = self._route(request)
            reader = self._reader(request)
            return route(request, reader)
        except _Refused as refused:
            return self._error(request, refused.status, refused.title, refused.message)
        except ForbiddenError as exc:
            return self._error(request, 403, "Not allowed", str(exc))
        except QueryError as exc:
            return self._error(request, 400, "Filter not understood", str(exc))
        except Exception:
            logger.exception("the audit log viewer failed on %s %s", request.method, request.path)
            return self._error(
                request, 500, "Something went wrong", "The audit log could not be shown. Try again."
            )

    def _route(self, request: ViewerRequest) -> Callable[[ViewerRequest, _Reader], ViewerResponse]:
        path, method = request.path, request.method
        if path == "/" and method == "GET":
            return self._page
        if path == "/entries" and method == "GET":
            return self._rows
        if path.startswith("/entries/") and method == "GET":
            return self._entry
        if path == "/export" and method == "POST":
            return self._export
        if path in ("/", "/entries", "/export") or path.startswith("/entries/"):
            raise _Refused(405, "Not allowed", f"{method} is not supported here")
        raise _Refused(404, "Not found", "There is no such page in the audit log.")

    def _reader(self, request: ViewerRequest) -> _Reader:
        token = request.param("token")
        if token:
            if self.tokens is None:
                raise _Refused(401, "Link not valid", "This audit log does not accept viewer links.")
            try:
                return _Reader(self.tokens.verify(token), token)
            except InvalidViewerTokenError as exc:
                raise _Refused(401, "Link not valid", str(exc)) from None
        if self._authorize is None:
            raise _Refused(401, "Link needed", "Open this audit log with a viewer link from the app.")
        access = self._authorize(request.native)
        if access is None:
            raise _Refused(403, "Not allowed", "You are not allowed to see this audit log.")
        if not isinstance(access, Access):
            raise TypeError(f"authorize must return an Access or None, not {type(access).__name__}")
        return _Reader(access, None)

    # -- routes ------------------------------------------------------------------------

    def _page(self, request: ViewerRequest, reader: _Reader) -> ViewerResponse:
        error = None
        filters = ViewFilters()
        entries: list[views.EntryView] = []
        next_cursor = None
        total = None
        status = 200
        try:
            filters = ViewFilters.from_params(request.query)
            query = filters.query(
                reader.access, page_size=self.page_size, cursor=request.param("cursor") or None
            )
            page = self.store.search(query)
            entries = [views.EntryView(event, filters.zone) for event in page.events]
            next_cursor = page.next_cursor
            total = self._total(query, page)
            self._record_list(request, reader, query, len(entries))
        except QueryError as exc:
            error, status = str(exc), 400
        except ForbiddenError:
            raise
        except AuditError as exc:
            logger.warning("the audit log viewer could not read the store: %s", exc)
            error, status = "The audit log is not available right now. Try again in a moment.", 503
        csrf = self._csrf(request, reader)
        body = views.render(
            "page.html",
            **self._context(request, reader, filters),
            entries=entries,
            next_cursor=next_cursor,
            total=total,
            error=error,
            csrf=csrf.value,
        )
        return ViewerResponse(status, [("Content-Type", _HTML), *csrf.headers, *self._headers()], body)

    def _rows(self, request: ViewerRequest, reader: _Reader) -> ViewerResponse:
        self._from_script(request)
        live = request.param("live") == "1"
        try:
            filters = ViewFilters.from_params(request.query)
            query = filters.query(
                reader.access, page_size=self.page_size, cursor=request.param("cursor") or None
            )
            if live:
                query = self._live(query, request.param("since"))
            page = self.store.search(query)
        except QueryError as exc:
            raise _Refused(400, "Filter not understood", str(exc)) from None
        except ForbiddenError:
            raise
        except AuditError as exc:
            logger.warning("the audit log viewer could not read the store: %s", exc)
            raise _Refused(503, "Not available", "The audit log is not available right now.") from None
        if not live:
            self._record_list(request, reader, query, len(page.events))
        # "load more" and live polls keep the total the page shows (the script takes only rows)
        total = None if live or query.cursor is not None else self._total(query, page)
        body = views.render(
            "results.html",
            **self._context(request, reader, filters),
            entries=[views.EntryView(event, filters.zone) for event in page.events],
            next_cursor=page.next_cursor,
            total=total,
            error=None,
        )
        return ViewerResponse(200, [("Content-Type", _HTML), *self._headers()], body)

    def _entry(self, request: ViewerRequest, reader: _Reader) -> ViewerResponse:
        entry_id = request.path.removeprefix("/entries/")
        filters = ViewFilters.from_params(request.query)
        filters.query(reader.access, page_size=1)  # the URL may not name another tenant or project
        access = reader.access
        try:
            event = self.store.get(access.tenant, entry_id) if _ENTRY_ID.fullmatch(entry_id) else None
        except ForbiddenError:
            raise
        except AuditError as exc:
            logger.warning("the audit log viewer could not read the store: %s", exc)
            raise _Refused(503, "Not available", "The audit log is not available right now.") from None
        if event is not None and access.projects is not None:
            project = event.project.id if event.project is not None else NO_PROJECT
            if project not in access.projects:
                event = None  # another project's entry is not found, not forbidden: nothing leaks
        self._record(
            request, reader, {"view": "entry", "found": event is not None}, entry_id=entry_id[:128] or None
        )
        if event is None:
            raise _Refused(404, "Entry not found", "There is no such entry in this audit log.")
        fragment = request.header(SCRIPT_HEADER) == "1"
        body = views.render(
            "entry_panel.html" if fragment else "entry.html",
            **self._context(request, reader, filters),
            entry=views.EntryView(event, filters.zone),
            dialog=fragment,
        )
        return ViewerResponse(200, [("Content-Type", _HTML), *self._headers()], body)

    def _export(self, request: ViewerRequest, reader: _Reader) -> ViewerResponse:
        self._same_origin(request)
        if reader.token is None:
            cookie, sent = request.cookie(CSRF_COOKIE) or "", request.form.get("csrf", [""])[0]
            if not cookie or not hmac.compare_digest(cookie.encode(), sent.encode()):
                raise _Refused(403, "Export refused", "The page is out of date: reload it and export again.")
        try:
            filters = ViewFilters.from_params(request.form)
            query = filters.query(reader.access, page_size=self.page_size)
        except QueryError as exc:
            raise _Refused(400, "Filter not understood", str(exc)) from None
        capture_context.audit_this_request(False)  # recorded below as audit_exported, not as a POST
        sink, redactor = self._read_sink()
        chunks = export_stream_audited(
            self.store,
            query,
            sink,
            actor=reader.access.actor,
            redactor=redactor,
            request=self._facts(request),
        )
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        name = re.sub(r"[^A-Za-z0-9_-]", "_", reader.access.tenant)[:64]
        headers = [
            ("Content-Type", "text/csv; charset=utf-8"),
            ("Content-Disposition", f'attachment; filename="audit-{name}-{stamp}.csv"'),
            *self._headers(),
        ]
        return ViewerResponse(200, headers, chunks)

    def _static(self, name: str) -> ViewerResponse:
        if name not in views.ASSETS:
            return ViewerResponse(
                404, [("Content-Type", "text/plain; charset=utf-8"), *self._headers()], b"not found"
            )
        headers = [
            ("Content-Type", views.ASSETS[name]),
            ("Cache-Control", "public, max-age=31536000, immutable"),  # the URL carries the content hash
            ("X-Content-Type-Options", "nosniff"),
            ("Cross-Origin-Resource-Policy", "same-origin"),
        ]
        return ViewerResponse(200, headers, views.asset(name))

    # -- helpers -----------------------------------------------------------------------

    def _total(self, query: AuditQuery, page: Page) -> BoundedCount | None:
        """How many entries match, shown beside them: the page itself when it is the whole
        answer, else the store's bounded count (exact up to 10,000, then "10,000+"), which
        reads at most that many index entries where an exact count would read every match.
        None when the store cannot count now: the entries are still shown."""
        if page.next_cursor is None and query.cursor is None:
            return BoundedCount(len(page.events), more=False)
        try:
            return self.store.count_bounded(query)
        except AuditError as exc:
            logger.warning("the audit log viewer could not count the entries: %s", exc)
            return None

    def _live(self, query: AuditQuery, since: str) -> AuditQuery:
        """A poll: entries at or after ``since`` (ms), never further back than ``LIVE_WINDOW``."""
        floor = datetime.now(timezone.utc) - LIVE_WINDOW
        try:
            moment = from_unix_ms(int(since)) if since else floor
        except (ValueError, OverflowError):
            raise QueryError("since must be a time in milliseconds") from None
        start = max(moment, floor, query.start or floor)
        if query.end is not None and start >= query.end:
            raise QueryError("a live view needs a range that has not ended")
        return replace(query, start=start, cursor=None)

    def _record_list(self, request: ViewerRequest, reader: _Reader, query: AuditQuery, rows: int) -> None:
        details: dict[str, Any] = {"view": "list", "filters": query.describe(), "rows": rows}
        if query.cursor is not None:
            details["page"] = "more"
        self._record(request, reader, details)

    def _record(
        self, request: ViewerRequest, reader: _Reader, details: dict[str, Any], entry_id: str | None = None
    ) -> None:
        if reader.token is not None:
            details["via"] = "viewer token"
        sink, redactor = self._read_sink()
        record_read(
            sink,
            "audit_viewed",
            actor=reader.access.actor,
            tenant=reader.access.tenant,
            details=details,
            redactor=redactor,
            entry_id=entry_id,
            request=self._facts(request),
        )

    def _facts(self, request: ViewerRequest) -> RequestFacts:
        """The reader's request: from the audit middleware when it wraps the app, else read here."""
        current = capture_context.current()
        if current is not None:
            return current.facts()
        settings = get_config()
        headers = request.headers
        return capture_context.RequestContext(
            method=request.method,
            path=request.base + request.path,
            peer=request.peer,
            x_forwarded_for=headers.get("x-forwarded-for"),
            forwarded=headers.get("forwarded"),
            user_agent_raw=headers.get("user-agent"),
            request_id_raw=headers.get("x-request-id"),
            traceparent=headers.get("traceparent"),
            trust=settings.trust,
            user_agent_limit=settings.user_agent_limit,
        ).facts()

    def _from_script(self, request: ViewerRequest) -> None:
        if request.header(SCRIPT_HEADER) != "1":
            raise _Refused(400, "Not a page", "This address is used by the audit log page itself.")
        self._same_origin(request)

    @staticmethod
    def _same_origin(request: ViewerRequest) -> None:
        site = request.header("sec-fetch-site")
        if site is not None:
            if site != "same-origin":
                raise _Refused(403, "Refused", "Requests from other sites are not accepted.")
            return
        origin, host = request.header("origin"), request.header("host")
        if origin is not None and (host is None or origin.partition("://")[2] != host):
            raise _Refused(403, "Refused", "Requests from other sites are not accepted.")

    def _csrf(self, request: ViewerRequest, reader: _Reader) -> _Csrf:
        if reader.token is not None:
            return _Csrf("", [])  # the token in the form is the proof
        value = request.cookie(CSRF_COOKIE)
        if value and re.fullmatch(r"[A-Za-z0-9_-]{43}", value):
            return _Csrf(value, [])
        value = secrets.token_urlsafe(32)
        cookie = f"{CSRF_COOKIE}={value}; Path={request.base}/; HttpOnly; SameSite=Strict"
        return _Csrf(value, [("Set-Cookie", cookie + ("; Secure" if request.secure else ""))])

    def _headers(self) -> list[tuple[str, str]]:
        csp = (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; form-action 'self'; base-uri 'none'; "
            f"frame-ancestors {self._frame_ancestors}"
        )
        return [
            ("Content-Security-Policy", csp),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),  # links may carry a viewer token
            ("Cache-Control", "no-store"),
            ("Cross-Origin-Resource-Policy", "same-origin"),
        ]

    def _context(self, request: ViewerRequest, reader: _Reader, filters: ViewFilters) -> dict[str, Any]:
        return {
            "title": self.title,
            "base": request.base,
            "access": reader.access,
            "token": reader.token,
            "filters": filters,
            "ranges": RANGES,
            "custom": CUSTOM,
            "actions": views.action_choices(),
            "resource_types": views.resource_choices(self._resource_types),
            "poll_ms": int(self.poll_interval * 1000),
            "script": views.asset_url(request.base, "viewer.js"),
            "stylesheet": views.asset_url(request.base, "viewer.css"),
            "now_ms": int(time.time() * 1000),
        }

    def _error(self, request: ViewerRequest, status: int, title: str, message: str) -> ViewerResponse:
        if request.header(SCRIPT_HEADER) == "1":
            body = views.render("error_panel.html", title=title, message=message)
        else:
            body = views.render(
                "error.html",
                title=title,
                message=message,
                page_title=self.title,
                base=request.base,
                stylesheet=views.asset_url(request.base, "viewer.css"),
            )
        return ViewerResponse(status, [("Content-Type", _HTML), *self._headers()], body)


@dataclass(frozen=True, slots=True)
class _Csrf:
    value: str
    headers: list[tuple[str, str]]
