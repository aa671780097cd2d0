"""The processing stage: every record redacted in one place before any sink sees it, IP truncation of
every address in it, and records redaction cannot read kept without what it covers."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from audit_middleware.model.actions import CATALOG
from audit_middleware.model.encoding import dumps
from audit_middleware.model.event import Actor, AuditEvent, ChangeSet, RequestFacts
from audit_middleware.processing.prepare import WITHHELD, prepare
from audit_middleware.processing.redaction import Redactor
from tests.capture.test_clientip import _addresses_in, _forwarded_element, _xff_element
from tests.query.conftest import make_event

KEY = b"k" * 32
TRUNCATING = Redactor(truncate_ips=True)


def test_the_event_is_redacted_in_place_and_returned() -> None:
    """prepare() returns the very event it was given, now redacted."""
    event = make_event("create", details={"password": "p"})
    assert prepare(event, Redactor()) is event
    assert event.details == {"password": "[REDACTED]"}


def test_change_values_are_masked_and_paths_cut() -> None:
    """Denied fields keep their name with masked values; a path through a denied key stops at it."""
    event = make_event(
        "update",
        changes=ChangeSet(
            {"name": "web", "password": "old", "tokens": {"ghp_1": "a"}},
            {"name": "api", "password": "new", "tokens": {"ghp_2": "b"}},
            ("tokens.ghp_2", "password", "name", "tokens.ghp_1"),
        ),
    )
    prepare(event, Redactor())
    assert event.changes == ChangeSet(
        {"name": "web", "password": "[REDACTED]", "tokens": "[REDACTED]"},
        {"name": "api", "password": "[REDACTED]", "tokens": "[REDACTED]"},
        ("name", "password", "tokens"),
    )


def test_details_are_masked_at_any_depth() -> None:
    """Nested secrets in details are masked; other values stay."""
    event = make_event("create", details={"request": {"headers": {"X-Api-Key": "k"}, "size": 3}})
    prepare(event, Redactor())
    assert event.details == {"request": {"headers": {"X-Api-Key": "[REDACTED]"}, "size": 3}}


def test_the_configured_denylist_applies() -> None:
    """Keys the app adds are masked; allowed keys are kept."""
    event = make_event("create", details={"pin_hint": "x", "token_type": "bearer", "badge": "b-7"})
    prepare(event, Redactor(extra_keys=["badge"], allow_keys=["token_type"]))
    assert event.details == {"pin_hint": "x", "token_type": "bearer", "badge": "[REDACTED]"}


def test_a_record_without_changes_or_details_is_left_as_it_is() -> None:
    """No changes stays None and empty details stay empty."""
    event = make_event("delete")
    prepare(event, Redactor())
    assert event.changes is None
    assert event.details == {}


def test_emails_are_pseudonymised_for_the_actor_and_the_impersonator() -> None:
    """With a pseudonym key, both the acting identity's and the real person's emails are replaced."""
    redactor = Redactor(email_pseudonym_key=KEY)
    admin = Actor(id="a1", email="admin@example.com")
    event = make_event("update", user=Actor(id="u1", email="ann@example.com", impersonator=admin))
    prepare(event, redactor)
    assert event.actor.email == redactor.email("ann@example.com")
    assert event.actor.impersonator is not None
    assert event.actor.impersonator.email == redactor.email("admin@example.com")
    assert event.actor.email.endswith("@pseudonym.invalid")
    assert (event.actor.id, event.actor.impersonator.id) == ("u1", "a1")


def test_without_a_pseudonym_key_emails_stay() -> None:
    """By default the actor is not touched."""
    actor = Actor(id="u1", email="ann@example.com")
    event = make_event("update", user=actor)
    prepare(event, Redactor())
    assert event.actor is actor


def test_ips_are_truncated_when_asked() -> None:
    """truncate_ips blurs the client IP and the addresses of the forwarded chain."""
    event = make_event(
        "create",
        request=RequestFacts(
            method="POST",
            path="/pods",
            client_ip="203.0.113.77",
            forwarded_chain=("203.0.113.77", "2001:db8:1234:5678::1"),
        ),
    )
    prepare(event, Redactor(truncate_ips=True))
    assert event.request is not None
    assert event.request.client_ip == "203.0.113.0"
    assert event.request.forwarded_chain == ("203.0.113.0", "2001:db8:1234::")
    assert (event.request.method, event.request.path) == ("POST", "/pods")


def test_the_chain_is_truncated_when_no_client_ip_was_resolved() -> None:
    """A peer without an address (a unix socket) still gets the forwarded addresses truncated."""
    event = make_event(
        "create", request=RequestFacts(client_ip=None, forwarded_chain=("198.51.100.7", "10.1.2.3"))
    )
    prepare(event, Redactor(truncate_ips=True))
    assert event.request is not None
    assert event.request.client_ip is None
    assert event.request.forwarded_chain == ("198.51.100.0", "10.1.2.0")


def test_ips_are_kept_by_default() -> None:
    """Without truncate_ips the request facts are untouched."""
    facts = RequestFacts(method="POST", client_ip="203.0.113.77", forwarded_chain=("203.0.113.77",))
    event = make_event("create", request=facts)
    prepare(event, Redactor())
    assert event.request is facts


def test_a_record_outside_a_request_needs_no_ip_handling() -> None:
    """A record without request facts passes with truncate_ips on."""
    event = make_event("create")
    prepare(event, Redactor(truncate_ips=True))
    assert event.request is None


class UnreadableKey:
    """A mapping key whose text cannot be taken, so no rule can be applied to it."""

    def __str__(self) -> str:
        raise RuntimeError("no text")


@pytest.mark.parametrize(
    ("changes", "details"),
    [
        (ChangeSet({"password": "hunter2"}, {"password": "hunter3"}, (1,)), {"password": "hunter2"}),  # type: ignore[arg-type]
        (ChangeSet(["password=hunter2"], {}, ("password",)), {}),  # type: ignore[arg-type]
        (None, {UnreadableKey(): "hunter2", "password": "hunter2"}),
    ],
    ids=["field-not-text", "before-not-a-mapping", "key-without-text"],
)
def test_a_record_that_cannot_be_redacted_is_kept_without_what_redaction_covers(
    changes: ChangeSet | None, details: dict[object, object]
) -> None:
    """Values the policy cannot read are withheld, with a marker and one warning; the record is kept."""
    event = make_event("update", changes=changes, details=details)  # type: ignore[arg-type]
    with capture_logs() as logs:
        assert prepare(event, Redactor()) is event
    assert "hunter2" not in str(event.to_document())
    assert event.changes is None
    assert event.details == {WITHHELD: event.details[WITHHELD]}
    assert "changes and details withheld" in event.details[WITHHELD]
    assert (event.action.id, event.actor.id) == ("update", "u1"), "who did what is kept"
    [warning] = logs
    assert warning["event_id"] == event.id
    assert warning["log_level"] == "warning"


def test_withheld_records_lose_their_emails_and_ips_when_those_are_protected() -> None:
    """With pseudonyms and truncation on, a record that could not be redacted keeps no email and no IP."""
    event = make_event(
        "update",
        user=Actor(id="u1", email="ann@example.com", impersonator=Actor(id="a1", email="root@example.com")),
        changes=ChangeSet({}, {}, (None,)),  # type: ignore[arg-type]
        request=RequestFacts(client_ip="203.0.113.77", forwarded_chain=("203.0.113.77",)),
    )
    prepare(event, Redactor(truncate_ips=True, email_pseudonym_key=KEY))
    text = str(event.to_document())
    for personal in ("ann@example.com", "root@example.com", "203.0.113"):
        assert personal not in text
    assert event.actor.id == "u1"
    assert event.actor.impersonator is not None
    assert event.actor.impersonator.id == "a1"


def test_withheld_records_keep_emails_and_ips_the_policy_does_not_touch() -> None:
    """Without pseudonyms or truncation configured, only changes and details are withheld."""
    facts = RequestFacts(client_ip="203.0.113.77")
    event = make_event(
        "update", user=Actor(email="ann@example.com"), details={UnreadableKey(): 1}, request=facts
    )
    prepare(event, Redactor())
    assert event.actor.email == "ann@example.com"
    assert event.request is facts


def _event(client_ip: str | None, chain: tuple[str, ...]) -> AuditEvent:
    return AuditEvent(
        id="0190a000-0000-7000-8000-000000000001",
        unix_ms=1_700_000_000_000,
        action=CATALOG.get("update"),
        actor=Actor(id="u1"),
        request=RequestFacts(method="POST", path="/x", client_ip=client_ip, forwarded_chain=chain),
    )


def _is_truncated(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return int(address) & (0xFF if address.version == 4 else (1 << 80) - 1) == 0


def _full_addresses(event: AuditEvent) -> list[str]:
    """Addresses in the stored record's IP fields that are not blurred to their network."""
    document = event.to_document()
    texts = [
        document.get("source", {}).get("ip") or "",
        *document.get("audit", {}).get("source", {}).get("forwarded", []),
    ]
    return [str(a) for text in texts for a in _addresses_in(text) if not _is_truncated(a)]


@pytest.mark.parametrize(
    ("element", "expected"),
    [
        pytest.param("198.51.100.77", "198.51.100.0", id="ipv4"),
        pytest.param("198.51.100.77:4711", "198.51.100.0", id="ipv4 with port"),
        pytest.param("2001:db8:1:2::7", "2001:db8:1::", id="ipv6"),
        pytest.param("[2001:db8:1:2::7]", "2001:db8:1::", id="bracketed ipv6"),
        pytest.param("[2001:db8:1:2::7]:4711", "2001:db8:1::", id="bracketed ipv6 with port"),
        pytest.param("::ffff:198.51.100.77", "198.51.100.0", id="mapped ipv4"),
        pytest.param('for="198.51.100.77:4711"', "for=198.51.100.0", id="forwarded quoted with port"),
        pytest.param(
            'for="[2001:db8:1:2::7]:4711";proto=https;by=203.0.113.9',
            'for="[2001:db8:1::]";proto=https;by=203.0.113.0',
            id="forwarded ipv6 with port and parameters",
        ),
        pytest.param("For=198.51.100.77;host=198.51.100.78", "for=198.51.100.0", id="forwarded host dropped"),
        pytest.param("unknown", "unknown", id="unknown"),
        pytest.param("for=_hidden", "for=_hidden", id="obfuscated"),
        pytest.param("x198.51.100.77y", "[REDACTED]", id="garbage holding an address"),
        pytest.param("_1.2.3.4", "[REDACTED]", id="placeholder holding an address"),
        pytest.param('for="198.51.100.77', "[REDACTED]", id="unbalanced quote"),
        pytest.param("for=unknown", "for=unknown", id="forwarded unknown"),
        pytest.param("proto=https;by=203.0.113.43", "proto=https;by=203.0.113.0", id="forwarded without for"),
        pytest.param("198.051.100.007", "[REDACTED]", id="leading zeros"),
    ],
)
def test_every_form_of_a_forwarded_address_is_truncated(element: str, expected: str) -> None:
    """truncate_ips truncates each forwarded element whatever its form; what cannot be read is masked."""
    event = prepare(_event("198.51.100.77", ("10.0.0.9", element)), TRUNCATING)
    assert event.request is not None
    assert event.request.client_ip == "198.51.100.0"
    assert event.request.forwarded_chain == ("10.0.0.0", expected)


def test_without_truncation_the_chain_is_kept_as_received() -> None:
    """The raw chain is kept for investigations unless truncation is on."""
    chain = ('for="[2001:db8::7]:4711";proto=https', "198.51.100.77:4711")
    event = prepare(_event("198.51.100.77", chain), Redactor())
    assert event.request is not None
    assert event.request.forwarded_chain == chain


@given(
    client=st.one_of(st.none(), st.ip_addresses().map(str)),
    chain=st.lists(st.one_of(_xff_element, _forwarded_element), max_size=6),
)
def test_no_full_address_survives_truncation(client: str | None, chain: list[str]) -> None:
    """Property: with truncate_ips, no address in the stored record's IP fields is more than its network."""
    event = prepare(_event(client, tuple(chain)), TRUNCATING)
    assert _full_addresses(event) == []
    dumps(event.to_document())  # and the record still encodes
