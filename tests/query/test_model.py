"""The query model: parsing filters, dates and cursors, with clear errors."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit_middleware.model.event import NO_TENANT
from audit_middleware.model.tenancy import NO_PROJECT
from audit_middleware.model.timestamps import format_timestamp
from audit_middleware.query.model import (
    BOUNDED_COUNT_LIMIT,
    MAX_PAGE_SIZE,
    AuditQuery,
    BoundedCount,
    Cursor,
    QueryError,
)
from tests.query.conftest import make_event

NOW = datetime(2026, 7, 15, 12, 0, tzinfo=timezone.utc)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


# -- dates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("since", "delta"),
    [
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("30d", timedelta(days=30)),
        ("7D", timedelta(days=7)),
        ("15m", timedelta(minutes=15)),
        ("2w", timedelta(weeks=2)),
    ],
)
def test_since_presets(since: str, delta: timedelta) -> None:
    """--since is measured back from now; the range stays open at the end."""
    query = AuditQuery.build("acme", since=since, now=NOW)
    assert query.start == NOW - delta
    assert query.end is None


@pytest.mark.parametrize("since", ["yesterday", "7", "-7d", "7 d", "1y", "99999d", ""])
def test_bad_since(since: str) -> None:
    """Unknown --since values name the accepted forms."""
    with pytest.raises(QueryError, match="24h, 7d, 30d"):
        AuditQuery.build("acme", since=since, now=NOW)


def test_custom_range_in_a_summer_timezone() -> None:
    """Naive --from/--to are read in --timezone (daylight saving included) and stored in UTC."""
    query = AuditQuery.build(
        "acme", start="2026-07-01T09:00", end="2026-07-01T17:30", timezone_name="Europe/Berlin"
    )
    assert query.start == _utc("2026-07-01T07:00")
    assert query.end == _utc("2026-07-01T15:30")


def test_custom_range_in_a_winter_timezone() -> None:
    """The same zone in winter is one hour closer to UTC."""
    query = AuditQuery.build("acme", start="2026-01-15T09:00", timezone_name="Europe/Berlin")
    assert query.start == _utc("2026-01-15T08:00")


def test_a_date_alone_as_end_includes_that_day() -> None:
    """--from 2026-11-01 --to 2026-11-30 is all of November, in the given zone."""
    query = AuditQuery.build("acme", start="2026-11-01", end="2026-11-30", timezone_name="America/New_York")
    assert query.start == _utc("2026-11-01T04:00")  # EDT until Nov 1st, 2am
    assert query.end == _utc("2026-12-01T05:00")  # EST


def test_explicit_offsets_win_over_the_timezone() -> None:
    """An offset or Z in the value is used as given."""
    query = AuditQuery.build(
        "acme", start="2026-07-01T09:00+05:30", end="2026-07-02T00:00Z", timezone_name="Asia/Tokyo"
    )
    assert query.start == _utc("2026-07-01T03:30")
    assert query.end == _utc("2026-07-02T00:00")


def test_datetimes_are_accepted() -> None:
    """Aware datetimes pass through (converted to UTC); naive ones get the zone."""
    aware = datetime(2026, 7, 1, 9, tzinfo=timezone(timedelta(hours=2)))
    query = AuditQuery.build("acme", start=aware, end=datetime(2026, 7, 2), timezone_name="UTC")
    assert query.start == _utc("2026-07-01T07:00")
    assert query.end == _utc("2026-07-02T00:00")


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"start": "2026-13-01"}, "invalid --from date"),
        ({"start": "last tuesday"}, "invalid --from date"),
        ({"end": "2026-02-30"}, "invalid --to date"),
        ({"end": "9999-12-31"}, "--to date"),
        ({"start": "9999-12-31T23:59:59-05:00"}, "out of range"),
        ({"start": "0001-01-01T00:00:00+01:00"}, "out of range"),
        ({"start": "2026-07-02", "end": "2026-07-01"}, "before its end"),
        ({"start": "2026-07-01", "since": "7d"}, "not both"),
        ({"timezone_name": "Mars/Olympus_Mons", "start": "2026-07-01"}, "unknown timezone"),
        ({"timezone_name": "../../etc/passwd", "start": "2026-07-01"}, "unknown timezone"),
    ],
)
def test_bad_dates(filters: dict[str, str], message: str) -> None:
    """Bad dates, ranges and zones are QueryErrors with a clear message, never a crash."""
    with pytest.raises(QueryError, match=message):
        AuditQuery.build("acme", now=NOW, **filters)  # type: ignore[arg-type]


def test_naive_datetimes_are_refused_by_the_constructor() -> None:
    """The dataclass itself takes only UTC datetimes (build() converts)."""
    with pytest.raises(QueryError, match="UTC"):
        AuditQuery(tenant="acme", start=datetime(2026, 1, 1))


@given(st.integers(min_value=-(10**12), max_value=10**13))
def test_milliseconds_are_exact(unix_ms: int) -> None:
    """start_ms / end_ms give back the exact millisecond (no float rounding)."""
    moment = EPOCH + timedelta(milliseconds=unix_ms)
    query = AuditQuery(tenant="acme", start=moment, end=moment + timedelta(milliseconds=1))
    assert query.start_ms == unix_ms
    assert query.end_ms == unix_ms + 1


def test_sub_millisecond_bounds_round_up() -> None:
    """A start between two milliseconds excludes the earlier one (the bound is inclusive)."""
    query = AuditQuery(tenant="acme", start=EPOCH + timedelta(microseconds=1500))
    assert query.start_ms == 2


# -- actions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("create", ("create",)),
        ("start-stop", ("start", "stop", "restart")),
        ("Start/Stop", ("start", "stop", "restart")),
        ("Login Failed", ("login_failed",)),
        ("LOGIN_FAILED", ("login_failed",)),
        ("ssh key added", ("ssh_key_added",)),
        ("Audit Log Exported", ("audit_exported",)),
        ("create,delete", ("create", "delete")),
        (["delete", "create", "delete"], ("delete", "create")),
        ("all", ()),
        (["create", "all"], ()),
    ],
)
def test_actions(action: str | list[str], expected: tuple[str, ...]) -> None:
    """Actions are ids, labels (any case), groups, or all; duplicates are dropped."""
    assert AuditQuery.build("acme", action=action).actions == expected


def test_unknown_action_lists_the_known_ones() -> None:
    """An unknown action names what would have worked."""
    with pytest.raises(QueryError, match=r"unknown action 'frobnicate'.*start-stop"):
        AuditQuery.build("acme", action="frobnicate")


def test_resource_types_and_user() -> None:
    """Resource types split on commas; user and search are trimmed, empty means no filter."""
    query = AuditQuery.build("acme", resource_type=["pod, storage", "pod"], user="  ", search="   ")
    assert query.resource_types == ("pod", "storage")
    assert query.user is None
    assert query.text is None


# -- page size, text, tenant ---------------------------------------------------------------


@pytest.mark.parametrize("size", [0, -5, MAX_PAGE_SIZE + 1, 10**9, "many", "1e3", None])
def test_bad_page_sizes(size: object) -> None:
    """Page sizes must be whole numbers between 1 and 500."""
    with pytest.raises(QueryError, match="page size"):
        AuditQuery.build("acme", page_size=size)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [1, "25", MAX_PAGE_SIZE])
def test_good_page_sizes(size: int | str) -> None:
    """The bounds themselves are allowed; numeric text is accepted (CLI, query strings)."""
    assert AuditQuery.build("acme", page_size=size).page_size == int(size)


def test_search_text_limit() -> None:
    """200 characters of search text are fine, 201 are refused."""
    assert AuditQuery.build("acme", search="x" * 200).text == "x" * 200
    with pytest.raises(QueryError, match="200"):
        AuditQuery.build("acme", search="x" * 201)


@pytest.mark.parametrize("tenant", ["", None, 42])
def test_a_tenant_is_required(tenant: object) -> None:
    """Every query names its tenant."""
    with pytest.raises(QueryError, match="tenant is required"):
        AuditQuery(tenant=tenant)  # type: ignore[arg-type]


def test_outcome_must_be_known() -> None:
    """Outcomes are success, failure or unknown."""
    with pytest.raises(QueryError, match="outcome"):
        AuditQuery.build("acme", outcome="maybe")


def test_no_tenant_constant() -> None:
    """Records without a tenant are selected by the NO_TENANT marker, which no string equals."""
    assert AuditQuery(tenant=NO_TENANT).tenant is NO_TENANT
    assert AuditQuery(tenant="-").tenant == "-"  # a tenant id like any other


# -- cursors -------------------------------------------------------------------------------


def test_cursor_round_trip() -> None:
    """A cursor encodes the last event's sort keys and decodes to the same."""
    event = make_event("create")
    token = Cursor.after(event).encode()
    assert Cursor.decode(token) == Cursor(event.unix_ms, event.id)
    assert AuditQuery.build("acme", cursor=token).cursor == Cursor(event.unix_ms, event.id)
    assert "=" not in token


def _token(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        "garbage!",
        "@@@@",
        _token({"unix_ms": 1, "id": "x"}),
        _token([1]),
        _token(["1", "x"]),
        _token([True, "x"]),
        _token([1.5, "x"]),
        _token([10**30, "x"]),
        _token([1, "x" * 65]),
        _token([1, None]),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        "é",
    ],
)
def test_bad_cursors(token: str) -> None:
    """A tampered or foreign cursor is a QueryError, never a crash or a strange query."""
    with pytest.raises(QueryError, match="invalid cursor"):
        Cursor.decode(token)


def test_next_page_keeps_the_filters() -> None:
    """next_page changes only the cursor."""
    query = AuditQuery.build("acme", action="delete", since="7d", now=NOW)
    cursor = Cursor(1, "x")
    following = query.next_page(cursor)
    assert following.cursor == cursor
    assert (following.actions, following.start) == (query.actions, query.start)


def test_describe_names_the_filters_set() -> None:
    """describe() lists the filters in use, dates in UTC ISO 8601."""
    query = AuditQuery.build(
        "acme", action="start-stop", user="ann@example.com", since="24h", search="web", now=NOW
    )
    assert query.describe() == {
        "tenant": "acme",
        "actions": ["start", "stop", "restart"],
        "user": "ann@example.com",
        "text": "web",
        "from": "2026-07-14T12:00:00Z",
    }
    assert format_timestamp(int(NOW.timestamp() * 1000)) == "2026-07-15T12:00:00.000Z"


def test_project_allow_list_and_excluded_actions_are_parsed() -> None:
    """A lone project string is one id; repeats are dropped; None means no restriction."""
    query = AuditQuery.build("acme", projects="p,1", exclude_actions=["audit_viewed", "audit_viewed"])
    assert query.projects == ("p,1",)
    assert query.exclude_actions == ("audit_viewed",)
    assert AuditQuery.build("acme").projects is None
    assert AuditQuery.build("acme", projects=[]).projects == ()
    assert AuditQuery.build("acme", projects=["b", "a", "b"]).describe()["projects"] == ["b", "a"]


def test_no_project_is_a_marker_in_filters_and_descriptions() -> None:
    """NO_PROJECT is kept as the marker (a lone one too), and described as null; '-' stays an id."""
    query = AuditQuery.build("acme", project=NO_PROJECT, projects=[NO_PROJECT, "-", NO_PROJECT])
    assert query.project is NO_PROJECT
    assert query.projects == (NO_PROJECT, "-")
    assert AuditQuery.build("acme", projects=NO_PROJECT).projects == (NO_PROJECT,)
    assert query.describe()["project"] is None
    assert query.describe()["projects"] == [None, "-"]
    json.dumps(query.describe())  # the read record's details stay JSON


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        pytest.param({"projects": tuple(f"p{i}" for i in range(501))}, "limited", id="too-many"),
        pytest.param({"projects": ("",)}, "non-empty", id="empty-id"),
        pytest.param({"projects": ["p1"]}, "tuple", id="a-list"),
        pytest.param({"exclude_actions": (1,)}, "non-empty", id="not-text"),
        pytest.param({"exclude_actions": (NO_PROJECT,)}, "non-empty", id="marker-as-action"),
        pytest.param({"project": 7}, "NO_PROJECT", id="project-not-text"),
        pytest.param({"project": ""}, "NO_PROJECT", id="project-empty"),
    ],
)
def test_bad_project_lists(filters: dict[str, object], message: str) -> None:
    """Allow- and deny-lists are tuples of at most 500 non-empty ids."""
    with pytest.raises(QueryError, match=message):
        AuditQuery(tenant="acme", **filters)  # type: ignore[arg-type]


def test_bounded_count_caps_and_reads_as_people_write_it() -> None:
    """BoundedCount.of keeps counts up to the limit exact and shows more as "10,000+"."""
    assert BoundedCount.of(9_999) == BoundedCount(9_999, more=False)
    assert BoundedCount.of(10_000) == BoundedCount(10_000, more=False)
    assert BoundedCount.of(10_001) == BoundedCount(BOUNDED_COUNT_LIMIT, more=True)
    assert (str(BoundedCount.of(10_001)), str(BoundedCount.of(1_234))) == ("10,000+", "1,234")
    with pytest.raises(QueryError, match="limit"):
        BoundedCount.of(5, limit=0)
