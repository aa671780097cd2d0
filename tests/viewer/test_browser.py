"""The Audit Logs page in a real browser: Chromium, the demo console as a server process.

Each test compares what the page shows with what the store holds for the same filters.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import io
import json
import sqlite3
import time
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from audit_middleware.model.event import Actor
from audit_middleware.query.model import AuditQuery
from audit_middleware.query.sqlite_store import SQLiteStore
from audit_middleware.reads import without_reads
from audit_middleware.viewer import ViewerTokens
from tests.viewer.browser import POLL_SECONDS, SECRET, DemoServer
from tests.viewer.conftest import login

pytestmark = pytest.mark.browser


def expected(store: SQLiteStore, tenant: str = "acme", **filters: Any) -> list[str]:
    """The ids of the first page the store gives for ``filters`` (reads of the log left out)."""
    query = AuditQuery.build(tenant, page_size=50, **filters)
    return [event.id for event in store.search(without_reads(query)).events]


def shown(page: Any) -> list[str]:
    """The ids of the rows on the page, top to bottom."""
    return page.eval_on_selector_all("#rows > tr", "rows => rows.map(row => row.dataset.id)")


def change(page: Any, act: Any) -> None:
    """Do ``act`` (a filter change) and wait for the page to show its answer."""
    with page.expect_response(lambda r: "/audit/entries?" in r.url and "live=1" not in r.url):
        act()
    page.wait_for_function("() => !document.getElementById('results').hasAttribute('aria-busy')")


def settled(server: DemoServer, quiet: float = 0.5, timeout: float = 15.0) -> None:
    """Wait until the server has stored what it recorded (its records reach the store from
    background threads): the newest row stays the same for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        with contextlib.closing(sqlite3.connect(f"file:{server.store_path}?mode=ro", uri=True)) as conn:
            newest = conn.execute("SELECT max(seq) FROM events").fetchone()[0]
        if newest != last:
            last, since = newest, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.05)
    raise AssertionError(f"the server kept storing records for {timeout:g} s")


def open_page(page: Any, server: DemoServer, query: str = "") -> None:
    """Go to the page (logged in as alice of acme, her login stored) and wait for its script."""
    login(page, server, "alice")
    settled(server)
    page.goto(server.page + query)
    page.wait_for_selector("#live-toggle:not([hidden]), #entries[data-live='off']", state="attached")


def test_every_filter_narrows_the_list_and_lives_in_the_url(page, server, seeded, store):
    """Action, resource type, date ranges, custom dates, user and time zone match the store, and reload."""
    open_page(page, server)
    assert shown(page) == expected(store)
    change(page, lambda: page.get_by_label("Action").select_option("delete"))
    assert shown(page) == expected(store, action="delete")
    assert seeded["old_delete"].id in shown(page)
    assert "action=delete" in page.url
    change(page, lambda: page.get_by_label("Date range").select_option("24h"))
    assert shown(page) == expected(store, action="delete", since="24h")
    assert seeded["old_delete"].id not in shown(page)
    for preset in ("7d", "30d"):
        change(page, lambda preset=preset: page.get_by_label("Date range").select_option(preset))
        assert shown(page) == expected(store, action="delete", since=preset)
    assert seeded["old_delete"].id in shown(page)
    page.reload()
    assert page.get_by_label("Action").input_value() == "delete"
    assert page.get_by_label("Date range").input_value() == "30d"
    assert shown(page) == expected(store, action="delete", since="30d")

    change(page, lambda: page.get_by_label("Action").select_option(""))
    change(page, lambda: page.get_by_label("Resource type").select_option("virtual_machine"))
    assert shown(page) == expected(store, resource_type="virtual_machine", since="30d")
    assert shown(page)
    change(page, lambda: page.get_by_label("Resource type").select_option(""))
    change(page, lambda: page.get_by_label("Action").select_option("start-stop"))
    assert shown(page) == expected(store, action="start-stop", since="30d")
    assert {text.strip() for text in page.locator("#rows td.action").all_inner_texts()} == {
        "Start",
        "Stop",
        "Restart",
    }
    change(page, lambda: page.get_by_label("Action").select_option("login_failed"))
    assert shown(page) == expected(store, action="login_failed", since="30d")

    change(page, lambda: page.get_by_label("Action").select_option(""))
    change(page, lambda: page.get_by_label("Date range").select_option("custom"))
    moment = seeded["old_update"].timestamp  # 20 days ago; the browser's zone is Europe/Berlin
    change(page, lambda: page.get_by_label("Times in").select_option("Europe/Berlin"))
    local = moment.astimezone(ZoneInfo("Europe/Berlin")).replace(tzinfo=None)
    start = local.replace(second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M")
    end = (local.replace(second=0, microsecond=0) + timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M")
    change(page, lambda: page.get_by_label("From").fill(start))
    change(page, lambda: page.get_by_label("To").fill(end))
    assert shown(page) == [seeded["old_update"].id]
    assert "Time (Europe/Berlin)" in page.text_content("#entries thead")
    assert page.inner_text("#rows td.time") == local.strftime("%Y-%m-%d %H:%M:%S")
    assert expected(store, start=start, end=end, timezone_name="Europe/Berlin") == [seeded["old_update"].id]

    page.goto(server.page)
    change(page, lambda: page.get_by_label("User").fill("dave@acme.example"))
    assert shown(page) == expected(store, user="dave@acme.example")
    assert {text.strip() for text in page.locator("#rows td.user").all_inner_texts()} == {"dave@acme.example"}
    assert "user=dave%40acme.example" in page.url


def test_search_box_finds_resource_names_actions_and_emails(page, server, seeded, store):
    """The search box matches as the store does, and an unmatched search shows the empty state."""
    open_page(page, server)
    for text in ("web", "login fail", "dave@", "legacy"):
        change(page, lambda text=text: page.get_by_label("Search").fill(text))
        assert shown(page) == expected(store, search=text), text
        assert shown(page), text
    change(page, lambda: page.get_by_label("Search").fill("no-such-thing-anywhere"))
    assert shown(page) == []
    assert page.get_by_text("No audit entries match these filters.").is_visible()
    page.get_by_role("link", name="Clear filters").first.click()
    page.wait_for_url(server.page)
    assert shown(page) == expected(store)


def wait_for_focus_on_row(page, entry_id: str) -> None:
    """Wait until the focus is in the row of ``entry_id`` (fails after 5 s).

    The dialog's close handler puts it back, and may run after the Escape key press returns.
    """
    page.wait_for_function(
        "id => document.activeElement?.closest('tr')?.dataset.id === id", arg=entry_id, timeout=5000
    )


def test_opening_an_entry_shows_who_from_where_and_a_readable_diff(page, server, store):
    """Clicking an update opens its details: user, IP, user agent, and previous / new values."""
    open_page(page, server, "?action=update&q=web-frontend")
    [update] = store.search(AuditQuery.build("acme", action="update", search="web-frontend")).events
    assert shown(page) == [update.id]
    row = page.locator(f"#rows tr[data-id='{update.id}']")
    row.locator("td.resource").click()
    dialog = page.locator("#entry-dialog[open]")
    dialog.wait_for()
    text = dialog.inner_text()
    assert "198.51.100.10" in text
    assert "Firefox/133.0" in text
    assert "Modified fields" in text
    diff = {
        cells[0]: (cells[1], cells[2])
        for cells in dialog.locator(".diff tbody tr").evaluate_all(
            "rows => rows.map(row => Array.from(row.children).map(cell => cell.innerText.trim()))"
        )
    }
    assert diff["spec.image"] == ('"nginx:1.27"'.strip('"'), "nginx:1.28")
    assert diff["spec.cpu"] == ("2", "4")
    assert dialog.locator(".diff del").first.is_visible()
    page.keyboard.press("Escape")
    assert not page.locator("#entry-dialog[open]").count()
    wait_for_focus_on_row(page, update.id)
    opened = store.search(AuditQuery.build("acme", action="audit_viewed", page_size=200)).events
    assert any(event.resource and event.resource.id == update.id for event in opened), (
        "the read was not recorded"
    )


def test_export_downloads_exactly_the_filtered_entries(page, server, store):
    """Export gives a CSV of every entry matching the filters (not one page), and is recorded."""
    open_page(page, server, "?action=create")
    with page.expect_download() as download:
        page.get_by_role("button", name="Export CSV").click()
    rows = list(csv.DictReader(io.StringIO(download.value.path().read_text("utf-8"), newline="")))
    query = AuditQuery.build("acme", action="create")
    events = list(store.iterate(query))
    assert len(events) > 50, "the filter should hold more than one page"
    assert [row["event_id"] for row in rows] == [event.id for event in events]
    assert {row["action_id"] for row in rows} == {"create"}
    assert all(row["timestamp"].endswith("Z") for row in rows)
    deadline = time.monotonic() + 10
    while True:
        exports = store.search(AuditQuery.build("acme", action="audit_exported")).events
        if exports or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert exports[0].details["rows"] == len(rows)
    assert exports[0].details["filters"]["actions"] == ["create"]
    assert exports[0].actor.email == "alice@acme.example"


def test_a_new_record_appears_live_at_the_top(page, server, store):
    """A pod created while the page is open shows up first, without a reload; reads do not."""
    open_page(page, server)
    top = shown(page)[0]
    created = page.request.post(
        f"{server.origin}/pods",
        data=json.dumps({"name": "live-arrival", "image": "x"}),
        headers={"Content-Type": "application/json"},
    )
    assert created.status == 201
    page.wait_for_function(
        "() => document.querySelector('#rows > tr td.resource').innerText.includes('live-arrival')",
        timeout=(POLL_SECONDS * 20) * 1000,
    )
    assert shown(page)[1] == top
    assert page.locator("#status").inner_text() == "1 new entry"
    time.sleep(POLL_SECONDS * 3)
    assert "Audit Log Viewed" not in page.inner_text("#rows"), "a read entered the live feed"


def test_the_live_view_stops_while_the_tab_is_hidden(page, server):
    """No poll is sent while the page is hidden; showing it again resumes polling."""
    open_page(page, server)
    page.wait_for_function("() => Number(document.getElementById('viewer').dataset.polls) >= 2")
    polls: list[str] = []
    page.on("request", lambda request: polls.append(request.url) if "live=1" in request.url else None)
    page.evaluate(
        """() => {
            Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
            Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'hidden'});
            document.dispatchEvent(new Event('visibilitychange'));
        }"""
    )
    page.wait_for_timeout(300)
    polls.clear()
    page.wait_for_timeout(POLL_SECONDS * 1000 * 5)
    assert polls == []
    page.evaluate(
        """() => {
            Object.defineProperty(document, 'hidden', {configurable: true, get: () => false});
            Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'visible'});
            document.dispatchEvent(new Event('visibilitychange'));
        }"""
    )
    page.wait_for_timeout(POLL_SECONDS * 1000 * 3)
    assert len(polls) >= 2


def test_load_more_continues_without_gaps_or_repeats(page, server, seeded, store):
    """ "Load more" appends the next keyset page: together, the store's newest entries in order."""
    open_page(page, server)
    first = shown(page)
    assert len(first) == 50
    with page.expect_response(lambda r: "cursor=" in r.url):
        page.get_by_role("link", name="Load more").click()
    page.wait_for_function("() => document.querySelectorAll('#rows > tr').length > 50")
    everything = [event.id for event in store.iterate(without_reads(AuditQuery.build("acme")))]
    assert shown(page) == everything[: len(shown(page))]
    assert len(set(shown(page))) == len(shown(page)) > 50


def test_reads_of_the_log_are_hidden_unless_asked_for(page, server, store):
    """Views and exports are recorded, and shown only with "Show reads of this log"."""
    open_page(page, server)
    assert "Audit Log Viewed" not in page.inner_text("#rows")
    change(page, lambda: page.get_by_label("Show reads of this log").check())
    assert "Audit Log Viewed" in page.inner_text("#rows")
    assert "reads=1" in page.url


def test_keyboard_moves_through_entries_and_opens_them(page, server):
    """Tab reaches the entries; arrow keys move between them; Enter opens, Escape closes."""
    open_page(page, server)
    page.locator("#rows > tr a.open").first.focus()
    ids = shown(page)
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    assert page.evaluate("document.activeElement.closest('tr').dataset.id") == ids[2]
    page.keyboard.press("Enter")
    page.locator("#entry-dialog[open]").wait_for()
    assert page.evaluate("document.activeElement.dataset.close !== undefined")
    page.keyboard.press("Escape")
    wait_for_focus_on_row(page, ids[2])
    for label in (
        "Search",
        "Action",
        "Resource type",
        "Date range",
        "User",
        "Times in",
        "Show reads of this log",
    ):
        assert page.get_by_label(label, exact=True).count() == 1, label


def test_on_a_phone_entries_are_cards_without_sideways_scrolling(page, server):
    """At 390 px wide the page fits the screen and each entry reads as labelled lines."""
    page.set_viewport_size({"width": 390, "height": 844})
    open_page(page, server)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert (
        page.locator("#rows > tr td.user").first.evaluate(
            "cell => getComputedStyle(cell, '::before').content"
        )
        == '"User"'
    )


def _forged(link: str, tenant: str) -> str:
    """A viewer link whose payload names another tenant, keeping the original signature."""
    page, token = link.split("token=", 1)
    version, body, mac = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["t"] = tenant
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    return f"{page}token={version}.{forged}.{mac}"


def test_another_tenants_records_are_never_visible(page, server, seeded, store):
    """Whatever the URL says, acme's reader never sees a globex record; globex's link sees only globex."""
    globex_ids = {event.id for event in store.iterate(AuditQuery.build("globex"))}
    assert seeded["globex_secret"].id in globex_ids
    open_page(page, server)
    assert globex_ids.isdisjoint(shown(page))
    change(page, lambda: page.get_by_label("Search").fill("globex-secret"))
    assert shown(page) == []

    response = page.goto(server.page + "?tenant=globex")
    assert response.status == 403
    assert "globex-secret-db" not in page.content()
    response = page.goto(f"{server.page}entries/{seeded['globex_secret'].id}")
    assert response.status == 404
    assert "globex-secret-db" not in page.content()
    response = page.goto(f"{server.page}entries/{seeded['globex_secret'].id}?tenant=globex")
    assert response.status == 403
    response = page.goto(server.page + "?project=../globex&tenant=acme")
    assert response.status == 200
    assert globex_ids.isdisjoint(shown(page))

    page.goto(server.page)
    page.evaluate(  # a tampered form: the export asks for another tenant
        "document.querySelector('#export')"
        ".insertAdjacentHTML('beforeend', '<input type=hidden name=tenant value=globex>')"
    )
    with page.expect_response(lambda r: r.url.endswith("/audit/export")) as answer:
        page.get_by_role("button", name="Export CSV").click()
    assert answer.value.status == 403

    page.context.clear_cookies()
    for link, status in (
        (_forged(server.links["acme"], "globex"), 401),
        (server.page + "?token=" + ViewerTokens("another-secret-" * 3).issue("globex", Actor(id="x")), 401),
        (
            server.page
            + "?token="
            + ViewerTokens(SECRET).issue("acme", Actor(id="u-1"), now=time.time() - 3600),
            401,
        ),
        (server.links["globex"] + "&tenant=acme", 403),
    ):
        response = page.goto(link)
        assert response.status == status, link
        assert not page.locator("#rows > tr").count()
    page.goto(server.links["globex"])
    assert set(shown(page)) <= globex_ids
    assert seeded["globex_secret"].id in shown(page)
    page.locator("#rows > tr").first.click()
    page.locator("#entry-dialog[open]").wait_for()
    assert "globex" in page.inner_text("#entry-dialog")


def test_the_bounded_total_is_shown_beside_a_search(page, server, seeded, store):
    """The page shows the store's bounded count of the entries (exact up to 10,000, then
    "10,000+"), and a search from the box replaces it with the count of its matches."""
    open_page(page, server)
    assert len(shown(page)) == 50  # more than one page: the total is the store's count
    total = store.count_bounded(without_reads(AuditQuery.build("acme")))
    assert page.locator("#total").inner_text() == f"{total} entries"
    change(page, lambda: page.get_by_label("Search").fill("web"))
    matches = store.count_bounded(without_reads(AuditQuery.build("acme", search="web")))
    assert shown(page) == expected(store, search="web")
    assert (
        page.locator("#total").inner_text()
        == f"{matches} {'entry matches' if str(matches) == '1' else 'entries match'}"
    )
