"""Trying to break the library from outside, as a security reviewer or an unlucky user would.

Every test generates hostile input and counts what must never happen (``tests/hostile/tally``):
a crash of the host app caused by auditing, a record lost, a read that returns another
tenant's record, a secret in any byte that a store keeps. Each then fails on any of them.
Records are also written to one SQLite file per module, whose bytes (database, WAL) are
searched for every planted secret at the end.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import ipaddress
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_middleware import ASGIAuditMiddleware, AuditMiddleware, Redactor, Resource, record
from audit_middleware.capture.clientip import ProxyTrust, resolve_client_ip
from audit_middleware.config import AuditConfig, use_config
from audit_middleware.model.changes import diff
from audit_middleware.model.encoding import dumps
from audit_middleware.model.event import AuditEvent, RequestFacts
from audit_middleware.model.tenancy import NO_TENANT
from audit_middleware.processing.prepare import prepare
from audit_middleware.query.export import csv_lines
from audit_middleware.query.model import AuditQuery, Cursor, QueryError
from audit_middleware.query.sqlite_store import SQLiteStore
from audit_middleware.query.store import AuditStore
from audit_middleware.sinks import MemorySink
from audit_middleware.sinks.sqlite import SQLiteSink
from tests.capture.test_clientip import _addresses_in, _forwarded_element, _xff_element
from tests.hostile import tally
from tests.hostile.conftest import PROFILE
from tests.processing.test_redaction import secret_spellings
from tests.query.conftest import make_event
from tests.query.test_export import _INVISIBLE, _TRIGGERS, assert_no_formula, hostile_event

HOSTILE = settings.get_profile(PROFILE)
TRUNCATING = Redactor(truncate_ips=True)
_SECRET = re.compile(rb"zq[0-9a-f]{32}")


# -- where records are kept, and searched for secrets afterwards -------------------------------


@dataclasses.dataclass
class Vault:
    """One SQLite store for the module's records, and the secrets planted in them."""

    sink: SQLiteSink
    path: Path
    secrets: set[str]

    def keep(self, events: list[AuditEvent], planted: set[str]) -> None:
        """Store ``events`` (already redacted); count ``planted`` secrets in their stored documents."""
        self.sink.write(events)
        self.secrets |= planted
        found = 0
        for event in events:
            stored = dumps(event.to_document())
            found += sum(1 for match in _SECRET.findall(stored) if match.decode() in planted)
        tally.saw("secrets_found", found)
        assert found == 0, "a planted secret reached a stored document"


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vault]:
    """The module's store; at the end, no planted secret may be in any of its bytes."""
    path = tmp_path_factory.mktemp("hostile") / "audit.sqlite3"
    kept = Vault(SQLiteSink(path, install_signal_handlers=False), path, set())
    yield kept
    kept.sink.close()
    found = 0
    for file in path.parent.glob("audit.sqlite3*"):  # the database, its WAL and shared memory
        found += sum(1 for match in _SECRET.findall(file.read_bytes()) if match.decode() in kept.secrets)
    tally.saw("secrets_found", found)
    assert found == 0, "a planted secret is in the store's bytes"


@contextmanager
def captured() -> Iterator[MemorySink]:
    """Records of one case go to memory, through the processing stage."""
    sink = MemorySink()
    previous = use_config(AuditConfig(sink=sink))
    try:
        yield sink
    finally:
        use_config(previous)


# -- secrets where an app may put them ---------------------------------------------------------


@dataclasses.dataclass
class Credentials:
    user: str
    password: str


class Login(pydantic.BaseModel):
    user: str
    api_key: str


class Holder:
    def __init__(self, token: str) -> None:
        self.owner = "ann"
        self.token = token


def _secret() -> str:
    return f"zq{uuid.uuid4().hex}"  # never produced by the text strategies below by chance


@st.composite
def planted(draw: st.DrawFn, secrets: set[str]) -> Any:
    """A value holding one new secret the way apps leak them: a denied key in any spelling, an
    object's field, an Authorization value or a URL password under an innocent key."""
    secret = _secret()
    secrets.add(secret)
    shapes: list[Callable[[], Any]] = [
        lambda: {draw(secret_spellings()): secret},
        lambda: {"nested": [{"x": 1}, {draw(secret_spellings()): {"deep": secret}}]},
        lambda: Credentials("ann", secret),
        lambda: Login(user="ann", api_key=secret),
        lambda: Holder(secret),
        lambda: [("X-Original", f"Bearer {secret}")],
        lambda: {"dsn": f"postgres://app:{secret}@db.internal/main"},
        lambda: {"HTTP_AUTHORIZATION": f"Basic {secret}", "HTTP_COOKIE": f"session={secret}"},
    ]
    return draw(st.sampled_from(shapes))()


_text = st.text(max_size=60)
_latin1 = st.text(st.characters(max_codepoint=255), max_size=200)
_header_bytes = st.binary(max_size=300)


# -- client IP ---------------------------------------------------------------------------------


_trust = st.one_of(
    st.just(ProxyTrust()),
    st.builds(ProxyTrust, hops=st.integers(1, 4), header=st.sampled_from(["x-forwarded-for", "forwarded"])),
    st.just(ProxyTrust.from_config(["10.0.0.0/8", "2001:db8::/32"])),
)


@settings(HOSTILE)
@given(
    peer=st.one_of(st.none(), st.ip_addresses().map(str), _text),
    xff=st.one_of(st.none(), _latin1, st.lists(_xff_element, max_size=8).map(", ".join)),
    forwarded=st.one_of(st.none(), _latin1, st.lists(_forwarded_element, max_size=8).map(", ".join)),
    trust=_trust,
)
def test_client_ip_never_raises_and_truncation_leaves_no_full_address(
    peer: str | None, xff: str | None, forwarded: str | None, trust: ProxyTrust
) -> None:
    """Any peer and forwarded headers resolve without raising; truncated records hold no full address."""
    tally.case("client IP")
    resolved = resolve_client_ip(peer, xff, forwarded, trust)
    if resolved.ip is not None:
        assert ipaddress.ip_address(resolved.ip)
    event = make_event("update", request=RequestFacts(client_ip=resolved.ip, forwarded_chain=resolved.chain))
    document = prepare(event, TRUNCATING).to_document()
    texts = [document.get("source", {}).get("ip") or ""]
    texts += document.get("audit", {}).get("source", {}).get("forwarded", [])
    full = [
        a
        for text in texts
        for a in _addresses_in(text)
        if int(a) & (0xFF if a.version == 4 else (1 << 80) - 1)
    ]
    assert full == []


# -- WSGI and ASGI requests --------------------------------------------------------------------


_METHODS = st.sampled_from(["POST", "PUT", "PATCH", "DELETE", "GET", "post", "PROPFIND", ""])


@st.composite
def wsgi_requests(draw: st.DrawFn, secrets: set[str]) -> dict[str, Any]:
    """A hostile WSGI environ: odd methods and paths, latin-1 header soup, credentials in headers."""
    secret = _secret()
    secrets.add(secret)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": draw(_METHODS),
        "PATH_INFO": draw(_latin1),
        "SCRIPT_NAME": draw(st.sampled_from(["", "/app"])),
        "QUERY_STRING": "",
        "REMOTE_ADDR": draw(st.one_of(st.ip_addresses().map(str), _latin1)),
        "SERVER_NAME": "test",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.input": io.BytesIO(draw(st.binary(max_size=200))),
        "wsgi.errors": io.StringIO(),
        "wsgi.url_scheme": "http",
        "HTTP_AUTHORIZATION": f"Bearer {secret}",
        "HTTP_COOKIE": f"session={secret}; other=1",
    }
    for name in ("X_FORWARDED_FOR", "FORWARDED", "USER_AGENT", "X_REQUEST_ID", "TRACEPARENT", "X_ODD"):
        if draw(st.booleans()):
            environ[f"HTTP_{name}"] = draw(st.one_of(_latin1, st.text(min_size=5000, max_size=9000)))
    return environ


def _expected_records(method: str, recorded: bool) -> int:
    return 1 if recorded or method.upper() in {"POST", "PUT", "PATCH", "DELETE"} else 0


@settings(HOSTILE)
@given(data=st.data())
def test_wsgi_requests(data: st.DataObject, vault: Vault) -> None:
    """Hostile WSGI requests never crash the app, each gets its record, no secret is kept."""
    tally.case("WSGI request")
    secrets: set[str] = set()
    environ = data.draw(wsgi_requests(secrets))
    leak = data.draw(planted(secrets))
    explicit = data.draw(st.booleans())
    fails = data.draw(st.booleans())

    class AppError(Exception):
        """The app's own failure, which must reach the server unchanged."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if explicit:
            # an app that dumps its request into the record, secrets and all
            dumped = {key: value for key, value in environ.items() if isinstance(value, str)}
            record("update", resource=Resource("pod", "p"), details={"environ": dumped, "leak": leak})
        if fails:
            raise AppError
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    with captured() as sink:
        try:
            result = AuditMiddleware(app)(environ, lambda status, headers, exc_info=None: None)
            body = b"".join(result)
            close = getattr(result, "close", None)  # as a server does (PEP 3333): only when it has one
            if close is not None:
                close()
            assert body == b"ok"
        except AppError:
            pass  # the app's exception, re-raised untouched
        except Exception:
            tally.saw("host_app_crashes")
            raise
    events = sink.events
    lost = _expected_records(environ["REQUEST_METHOD"], explicit) - len(events)
    tally.saw("records_lost", max(lost, 0))
    assert lost == 0, "a request lost its record (or got two)"
    vault.keep(events, secrets)


@st.composite
def asgi_scopes(draw: st.DrawFn, secrets: set[str]) -> dict[str, Any]:
    """A hostile ASGI scope: raw header bytes (invalid UTF-8 included), odd paths and clients."""
    secret = _secret()
    secrets.add(secret)
    headers = [(b"authorization", f"Bearer {secret}".encode()), (b"cookie", f"sid={secret}".encode())]
    names = (b"x-forwarded-for", b"forwarded", b"user-agent", b"x-request-id", b"traceparent", b"X-Odd")
    chosen = draw(st.lists(st.sampled_from(names), max_size=8))  # repeated headers too
    headers.extend((name, draw(_header_bytes)) for name in chosen)
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "method": draw(_METHODS),
        "path": draw(st.text(max_size=300)),
        "root_path": draw(st.sampled_from(["", "/api"])),
        "headers": headers,
        "client": draw(
            st.one_of(
                st.none(), st.tuples(st.one_of(st.ip_addresses().map(str), _text), st.integers(0, 65535))
            )
        ),
    }


@settings(HOSTILE)
@given(data=st.data())
def test_asgi_requests(data: st.DataObject, vault: Vault) -> None:
    """Hostile ASGI requests never crash the app, each gets its record, no secret is kept."""
    tally.case("ASGI request")
    secrets: set[str] = set()
    scope = data.draw(asgi_scopes(secrets))
    leak = data.draw(planted(secrets))
    explicit = data.draw(st.booleans())
    status = data.draw(st.sampled_from([200, 201, 302, 400, 404, 500]))

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if explicit:
            headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]]
            record("update", details={"headers": headers, "leak": leak})
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with captured() as sink:
        try:
            asyncio.run(ASGIAuditMiddleware(app)(scope, receive, send))
        except Exception:
            tally.saw("host_app_crashes")
            raise
    assert [message["type"] for message in sent] == ["http.response.start", "http.response.body"]
    events = sink.events
    lost = _expected_records(scope["method"], explicit) - len(events)
    tally.saw("records_lost", max(lost, 0))
    assert lost == 0, "a request lost its record (or got two)"
    vault.keep(events, secrets)


# -- redaction ---------------------------------------------------------------------------------


@settings(HOSTILE)
@given(data=st.data())
def test_redaction_of_planted_secrets(data: st.DataObject, vault: Vault) -> None:
    """Secrets planted in details and change values, in any shape, never reach the stored document."""
    tally.case("redaction")
    secrets: set[str] = set()
    details = {data.draw(_text): data.draw(planted(secrets)) for _ in range(data.draw(st.integers(1, 3)))}
    before = {"config": data.draw(planted(secrets)), "n": 1}
    after = {"config": data.draw(planted(secrets)), "n": 2}
    event = make_event("update", details=details, changes=diff(before, after))
    vault.keep([prepare(event, Redactor())], secrets)


# -- CSV ---------------------------------------------------------------------------------------


_cell_text = st.text(
    alphabet=st.one_of(
        st.characters(blacklist_categories=("Cs",)),
        st.sampled_from(_INVISIBLE + _TRIGGERS + ";,\"'"),
    ),
    max_size=40,
)


@settings(HOSTILE)
@given(
    name=_cell_text,
    user=_cell_text,
    user_agent=_cell_text,
    fields=st.lists(_cell_text, max_size=3),
    details=st.dictionaries(_cell_text, _cell_text, max_size=3),
)
def test_csv_cells_never_start_a_formula(
    name: str, user: str, user_agent: str, fields: list[str], details: dict[str, object]
) -> None:
    """No CSV cell, parsed or split on ';' and line breaks, starts a formula."""
    tally.case("CSV")
    assert_no_formula("".join(csv_lines([hostile_event(name, user, user_agent, details, fields)])))


# -- tenants, search strings, cursors ----------------------------------------------------------


_tenant_ids = st.one_of(
    st.text(min_size=1, max_size=30),
    st.sampled_from(
        ["-", "~", "~acme", "acme", "ACME", "acme ", " acme", "acme\x00", "a" * 1024, "a" * 1025]
    ),
    st.builds(lambda tail: "t" * 1100 + tail, st.text(max_size=3)),
    st.builds(lambda count: "\U0001f680" * count, st.integers(500, 520)),
)


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SQLiteSink, SQLiteStore]]:
    """One store for the tenant and search cases (reads across all of them must stay scoped)."""
    path = tmp_path_factory.mktemp("tenants") / "audit.sqlite3"
    sink = SQLiteSink(path, install_signal_handlers=False)
    store = SQLiteStore(path)
    yield sink, store
    store.close()
    sink.close()


def _foreign(events: list[AuditEvent], tenant: str | object) -> int:
    """How many ``events`` do not belong to ``tenant`` (``NO_TENANT``: records without one)."""
    if tenant is NO_TENANT:
        return sum(1 for event in events if event.tenant is not None)
    return sum(1 for event in events if event.tenant is None or event.tenant.id != tenant)


@settings(HOSTILE)
@given(tenants=st.lists(_tenant_ids, min_size=1, max_size=4, unique=True), untenanted=st.booleans())
def test_tenants_only_ever_read_their_own(
    tenants: list[str], untenanted: bool, shared_store: tuple[SQLiteSink, SQLiteStore]
) -> None:
    """Hostile tenant ids ('-', over-long, shared prefixes, '~', NUL) each read only their own records."""
    tally.case("tenant isolation")
    sink, store = shared_store
    marker = uuid.uuid4().hex
    events = {
        tenant: make_event("create", tenant=tenant, resource=Resource("pod", "p", f"m{marker}"))
        for tenant in tenants
    }
    if untenanted:
        events[NO_TENANT] = make_event("create", tenant=None, resource=Resource("pod", "p", f"m{marker}"))  # type: ignore[index]
    sink.write(events.values())
    for tenant, own in events.items():
        query = AuditQuery.build(tenant, search=f"m{marker}")
        found = store.search(query).events
        foreign = _foreign(found, tenant)
        tally.saw("cross_tenant_reads", foreign)
        assert foreign == 0
        lost = 0 if own.id in {event.id for event in found} else 1
        tally.saw("records_lost", lost)
        assert lost == 0
        assert store.get(tenant, own.id) is not None
        for other, event in events.items():
            if other != tenant and store.get(tenant, event.id) is not None:
                tally.saw("cross_tenant_reads")
                pytest.fail(f"tenant {tenant!r} read a record of {other!r}")


@settings(HOSTILE)
@given(text=st.text(max_size=220), tenant=_tenant_ids)
def test_search_strings_are_only_values(
    text: str, tenant: str, shared_store: tuple[SQLiteSink, SQLiteStore]
) -> None:
    """Any search text is a value, never syntax: a clear QueryError or results of this tenant only."""
    tally.case("search string")
    check_search(shared_store[1], tenant, text)


def check_search(store: AuditStore, tenant: str, text: str) -> None:
    """Search ``store`` for ``text`` as ``tenant``: a clear QueryError, or this tenant's records only."""
    try:
        query = AuditQuery.build(tenant, search=text)
    except QueryError:
        return  # too long: a clear error
    found = store.search(query).events
    foreign = _foreign(found, tenant)
    tally.saw("cross_tenant_reads", foreign)
    assert foreign == 0
    assert store.count(query) >= len(found)


@settings(HOSTILE)
@given(
    token=st.one_of(
        st.text(max_size=80),
        st.binary(max_size=60).map(lambda raw: base64.urlsafe_b64encode(raw).decode()),
        st.builds(
            lambda ms, eid: Cursor(ms, eid).encode(), st.integers(-(2**60), 2**60), st.text(max_size=70)
        ),
    ),
    tenant=_tenant_ids,
)
def test_cursors_are_checked_and_stay_in_the_tenant(
    token: str, tenant: str, shared_store: tuple[SQLiteSink, SQLiteStore]
) -> None:
    """Any cursor token is a clear QueryError or a position inside this tenant's records."""
    tally.case("cursor")
    _, store = shared_store
    try:
        query = AuditQuery.build(tenant, cursor=token)
    except QueryError:
        return
    found = store.search(query).events
    foreign = _foreign(found, tenant)
    tally.saw("cross_tenant_reads", foreign)
    assert foreign == 0
