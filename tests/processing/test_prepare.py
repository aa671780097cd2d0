"""The processing stage: every record redacted in one place before any sink sees it."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from audit_middleware.model.event import Actor, ChangeSet, RequestFacts
from audit_middleware.processing.prepare import HOP_WITHHELD, WITHHELD, prepare
from audit_middleware.processing.redaction import Redactor
from tests.query.conftest import make_event

KEY = b"k" * 32


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


@pytest.mark.parametrize(
    ("hop", "truncated"),
    [
        ("for=198.51.100.7;proto=https", "for=198.51.100.0;proto=https"),
        ('proto=http;For="198.51.100.7:4711"', "proto=http;for=198.51.100.0"),
        ('for="[2001:db8:1234:5678::1]:443";by=10.0.0.1', 'for="[2001:db8:1234::]";by=10.0.0.1'),
        ("198.51.100.7:8080", "198.51.100.0"),
        ("for=unknown", HOP_WITHHELD),
        ("for=_hidden;proto=https", HOP_WITHHELD),
        ("proto=https;by=203.0.113.43", HOP_WITHHELD),
        ("198.051.100.007", HOP_WITHHELD),
        ("unknown", HOP_WITHHELD),
    ],
    ids=[
        "forwarded",
        "forwarded-quoted-port",
        "forwarded-ipv6",
        "port",
        "forwarded-unknown",
        "forwarded-obfuscated",
        "forwarded-without-for",
        "leading-zeros",
        "not-an-address",
    ],
)
def test_every_hop_of_the_chain_is_truncated_or_withheld(hop: str, truncated: str) -> None:
    """Forwarded elements get their for= address truncated in place; hops without one are withheld."""
    event = make_event("create", request=RequestFacts(client_ip="198.51.100.7", forwarded_chain=(hop,)))
    prepare(event, Redactor(truncate_ips=True))
    assert event.request is not None
    assert event.request.forwarded_chain == (truncated,)
    assert "198.51.100.7" not in str(event.to_document())


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
