"""The viewer's core, through its WSGI mount: routes, access, recorded reads, CSRF, CSP, export."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.test import Client

from audit_middleware import AuditMiddleware, configure
from audit_middleware.model.event import Actor
from audit_middleware.model.tenancy import NO_PROJECT
from audit_middleware.query.sqlite_store import SQLiteStore
from audit_middleware.sinks import MemorySink
from audit_middleware.sinks.sqlite import SQLiteSink
from audit_middleware.viewer import Access, AuditViewer
from audit_middleware.viewer.wsgi import mount_wsgi
from tests.query.conftest import MINUTE, make_event
from tests.viewer.support import ANN, Fixture, fixture

SCRIPT = {"X-Audit-Viewer": "1", "Sec-Fetch-Site": "same-origin"}


def _app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the host app"]


@pytest.fixture
def viewer(tmp_path: Path) -> Iterator[Fixture]:
    """A viewer over acme and globex events."""
    made = fixture(tmp_path)
    yield made
    made.store.close()


def client(viewer: AuditViewer) -> Client:
    """A client of a host app with the viewer at /audit."""
    return Client(mount_wsgi(_app, "/audit", viewer))


def ids(html: str) -> list[str]:
    """The entry ids of a page or fragment, top to bottom."""
    return re.findall(r'<tr data-id="([^"]+)"', html)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match
    return match.group(1)


def test_the_page_lists_the_tenants_entries_newest_first(viewer: Fixture):
    """The page shows acme's entries, newest first, never globex's; the host app is untouched."""
    web = client(viewer.viewer)
    page = web.get("/audit/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert ids(html) == [viewer.events[name].id for name in ("update", "delete", "login")]
    assert "globex-secret" not in html
    assert web.get("/elsewhere").get_data() == b"the host app"
    assert web.get("/audit").headers["Location"] == "/audit/"


def test_every_response_carries_a_strict_content_security_policy(viewer: Fixture):
    """No inline script or style is allowed; framing only by the app itself; no referrer."""
    page = client(viewer.viewer).get("/audit/")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp
    assert "style-src 'self';" in csp
    assert "frame-ancestors 'self'" in csp
    assert "unsafe-inline" not in csp
    assert page.headers["Referrer-Policy"] == "no-referrer"
    html = page.get_data(as_text=True)
    assert "<script>" not in html
    assert " style=" not in html
    assert re.search(r'<script src="/audit/static/viewer.js\?v=[0-9a-f]{12}" defer>', html)


def test_assets_are_served_by_the_viewer_and_cached_by_content(viewer: Fixture):
    """The script and stylesheet come from the viewer, immutable (their URL names their content)."""
    web = client(viewer.viewer)
    script = web.get("/audit/static/viewer.js")
    assert script.status_code == 200
    assert script.headers["Content-Type"].startswith("text/javascript")
    assert "immutable" in script.headers["Cache-Control"]
    assert web.get("/audit/static/../core.py").status_code == 404
    assert web.get("/audit/static/other.js").status_code == 404


def test_a_url_can_only_narrow_the_access(tmp_path: Path):
    """Another tenant in the URL is refused; a project outside the allow-list too; inside it, it narrows."""
    made = fixture(tmp_path, projects=("p1", NO_PROJECT))
    web = client(made.viewer)
    assert web.get("/audit/?tenant=globex").status_code == 403
    assert web.get("/audit/?tenant=acme").status_code == 200
    assert web.get("/audit/?project=p2").status_code == 403
    listed = ids(web.get("/audit/").get_data(as_text=True))
    assert listed == [made.events["update"].id, made.events["login"].id], "p2's entry is not listed"
    assert ids(web.get("/audit/?project=p1").get_data(as_text=True)) == [made.events["update"].id]
    assert web.get(f"/audit/entries/{made.events['delete'].id}").status_code == 404
    assert web.get(f"/audit/entries/{made.events['globex'].id}").status_code == 404
    made.store.close()


def test_a_project_named_dash_is_not_outside_every_project(tmp_path: Path):
    """A reader allowed only the records outside any project neither lists nor opens project '-'."""
    dash = make_event("delete", ago_ms=MINUTE, project="-")
    loose = make_event("update", ago_ms=2 * MINUTE)
    with SQLiteSink(tmp_path / "audit.sqlite3") as sink:
        sink.write([dash, loose])
    with SQLiteStore(tmp_path / "audit.sqlite3") as store:
        viewer = AuditViewer(
            authorize=lambda _request: Access("acme", ANN, projects=(NO_PROJECT,)),
            store=store,
            sink=MemorySink(),
        )
        web = client(viewer)
        page = web.get("/audit/").get_data(as_text=True)
        assert ids(page) == [loose.id]
        assert 'value="-"' not in page, "the marker is no project to pick"
        assert web.get(f"/audit/entries/{loose.id}").status_code == 200
        assert web.get(f"/audit/entries/{dash.id}").status_code == 404
        assert web.get("/audit/?project=-").status_code == 403, "'-' names a project outside the grant"


def test_the_authorisation_callback_decides(tmp_path: Path):
    """None refuses (403); a failing callback is a 500 that shows no traceback."""
    made = fixture(tmp_path)

    def broken(_request: object) -> Access:
        raise RuntimeError("secret detail")

    refused = AuditViewer(authorize=lambda _request: None, store=made.store, sink=MemorySink())
    assert client(refused).get("/audit/").status_code == 403
    failing = client(AuditViewer(authorize=broken, store=made.store, sink=MemorySink())).get("/audit/")
    assert failing.status_code == 500
    assert "secret detail" not in failing.get_data(as_text=True)
    made.store.close()


def test_reads_are_recorded_with_the_readers_request(viewer: Fixture):
    """The page view and an opened entry are audit_viewed records of the reader, with their address."""
    configure(sink=MemorySink(), trusted_proxies=1)
    web = client(viewer.viewer)
    headers = {"X-Forwarded-For": "203.0.113.9", "User-Agent": "Reader/1"}
    web.get("/audit/?action=delete", headers=headers, environ_base={"REMOTE_ADDR": "10.0.0.1"})
    web.get(f"/audit/entries/{viewer.events['update'].id}", headers=headers)
    listed, opened = viewer.reads.events
    assert (listed.action.id, listed.actor, listed.tenant.id if listed.tenant else None) == (
        "audit_viewed",
        Actor(id="u1", email="ann@acme.example"),
        "acme",
    )
    assert listed.details == {"view": "list", "filters": {"tenant": "acme", "actions": ["delete"]}, "rows": 1}
    assert listed.request is not None
    assert (listed.request.client_ip, listed.request.user_agent) == ("203.0.113.9", "Reader/1")
    assert opened.resource is not None
    assert opened.resource.id == viewer.events["update"].id
    assert opened.details == {"view": "entry", "found": True}


def test_script_requests_need_the_header_and_the_same_origin(viewer: Fixture):
    """The rows fragment is refused to plain links and to other sites."""
    web = client(viewer.viewer)
    assert web.get("/audit/entries").status_code == 400
    assert web.get("/audit/entries", headers={**SCRIPT, "Sec-Fetch-Site": "cross-site"}).status_code == 403
    rows = web.get("/audit/entries?action=delete", headers=SCRIPT)
    assert ids(rows.get_data(as_text=True)) == [viewer.events["delete"].id]


def test_live_polls_are_not_recorded_and_reach_back_only_minutes(viewer: Fixture):
    """A poll returns recent entries only, however far back it asks, and leaves no read record."""
    web = client(viewer.viewer)
    poll = web.get("/audit/entries?live=1&since=0", headers=SCRIPT)
    assert ids(poll.get_data(as_text=True)) == [viewer.events["update"].id], "older than the window"
    assert viewer.reads.events == []
    assert web.get("/audit/entries?live=1&since=x", headers=SCRIPT).status_code == 400


def test_bad_filters_get_a_clear_message(viewer: Fixture):
    """An unknown action or range shows the page with the reason, status 400."""
    web = client(viewer.viewer)
    page = web.get("/audit/?action=frobnicate")
    assert page.status_code == 400
    assert "unknown action" in page.get_data(as_text=True)
    assert web.get("/audit/?range=1y").status_code == 400
    assert web.get("/audit/?tz=Mars/Base").status_code == 400


def test_export_needs_the_pages_csrf_token(viewer: Fixture):
    """Without the page's token, or from another site, the export is refused and nothing is recorded."""
    web = client(viewer.viewer)
    csrf = csrf_of(web.get("/audit/").get_data(as_text=True))
    before = len(viewer.reads.events)
    assert web.post("/audit/export", data={"csrf": "forged"}).status_code == 403
    other = client(viewer.viewer)
    assert other.post("/audit/export", data={"csrf": csrf}).status_code == 403, "no cookie there"
    cross = web.post("/audit/export", data={"csrf": csrf}, headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403
    assert len(viewer.reads.events) == before


def test_export_streams_exactly_the_filtered_entries_and_records_it(viewer: Fixture):
    """The CSV holds every filtered entry; the export is recorded; the host's middleware adds no record."""
    app_records = MemorySink()
    configure(sink=app_records)
    web = Client(AuditMiddleware(mount_wsgi(_app, "/audit", viewer.viewer)))
    csrf = csrf_of(web.get("/audit/").get_data(as_text=True))
    answer = web.post("/audit/export", data={"csrf": csrf, "action": "delete", "q": "disk"})
    assert answer.status_code == 200
    assert answer.headers["Content-Disposition"].startswith('attachment; filename="audit-acme-')
    rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True), newline="")))
    assert [row["event_id"] for row in rows] == [viewer.events["delete"].id]
    exported = viewer.reads.events[-1]
    assert exported.action.id == "audit_exported"
    assert exported.details["rows"] == 1
    assert exported.details["filters"] == {"tenant": "acme", "actions": ["delete"], "text": "disk"}
    assert app_records.events == [], "the export POST is one record (audit_exported), not two"


def test_viewer_tokens_open_one_tenant_and_ride_in_every_link(viewer: Fixture):
    """A token link shows its tenant; links and forms carry it; a bad token is a 401 without entries."""
    token = viewer.viewer.issue_token(Access("globex", Actor(id="partner")))
    web = client(viewer.viewer)
    html = web.get(f"/audit/?token={token}").get_data(as_text=True)
    assert ids(html) == [viewer.events["globex"].id]
    assert f'name="token" value="{token}"' in html
    assert f"/audit/entries/{viewer.events['globex'].id}?token={token}" in html
    assert web.get(f"/audit/?token={token}&tenant=acme").status_code == 403
    refused = web.get("/audit/?token=v1.e30.AAAA")
    assert refused.status_code == 401
    assert not ids(refused.get_data(as_text=True))
    exported = web.post("/audit/export", data={"token": token})
    assert exported.status_code == 200, "the token is the export's proof"
    assert viewer.reads.events[-1].details["via"] == "viewer token"


class _CappedCounts(SQLiteStore):
    """A store whose bounded counts stop at 2 (as the real one stops at 10,000); no exact counts."""

    def count(self, query):  # the page must not pay for an exact count
        raise AssertionError("the viewer asked for an exact count")

    def count_bounded(self, query, limit=10_000):
        return super().count_bounded(query, limit=2)


def _total(html: str) -> str | None:
    match = re.search(r'<p class="total" id="total">([^<]*)</p>', html)
    return match.group(1) if match else None


def test_the_total_beside_the_entries_is_the_bounded_count(tmp_path: Path):
    """A page that is the whole answer shows its own length; one with more pages shows the
    store's bounded count ("2+" here, "10,000+" on a real store), for the page and for the
    script's filter changes; "load more" fragments and live polls carry none."""
    made = fixture(tmp_path)
    whole = client(made.viewer).get("/audit/").get_data(as_text=True)
    assert _total(whole) == "3 entries"
    store = _CappedCounts(tmp_path / "audit.sqlite3")
    web = client(
        AuditViewer(authorize=lambda _r: Access("acme", ANN), store=store, sink=MemorySink(), page_size=1)
    )
    page = web.get("/audit/").get_data(as_text=True)
    assert len(ids(page)) == 1
    assert _total(page) == "2+ entries"
    searched = web.get("/audit/entries?q=web", headers=SCRIPT).get_data(as_text=True)
    assert ids(searched) == [made.events["update"].id]
    assert _total(searched) == "1 entry matches"  # the whole answer: counted by the page
    narrowed = web.get("/audit/entries?user=ann@acme.example", headers=SCRIPT).get_data(as_text=True)
    assert _total(narrowed) == "2 entries match"
    cursor = re.search(r'data-cursor="([^"]+)"', page)
    assert cursor
    more = web.get(f"/audit/entries?cursor={cursor.group(1)}", headers=SCRIPT).get_data(as_text=True)
    assert ids(more)
    assert _total(more) is None
    assert _total(web.get("/audit/entries?live=1", headers=SCRIPT).get_data(as_text=True)) is None
    store.close()
    made.store.close()
