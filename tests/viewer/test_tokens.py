"""Viewer tokens: one tenant, short-lived, unforgeable; every way of tampering is refused."""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta

import pytest

from audit_middleware.errors import AuditValidationError
from audit_middleware.model.event import Actor
from audit_middleware.model.tenancy import NO_PROJECT
from audit_middleware.viewer import InvalidViewerTokenError, ViewerTokens

KEY = "k" * 40
READER = Actor(id="u1", name="ann", email="ann@acme.example")


def test_a_token_round_trips_its_grant():
    """verify() returns the tenant, the projects and the reader the token was issued for."""
    tokens = ViewerTokens(KEY)
    access = tokens.verify(tokens.issue("acme", READER, projects=["p1", "p2"], tenant_name="Acme"))
    assert (access.tenant, access.projects, access.actor, access.tenant_name) == (
        "acme",
        ("p1", "p2"),
        READER,
        "Acme",
    )
    assert tokens.issue("acme", READER) != tokens.issue("acme", READER), "each token is unique"


def test_no_project_survives_a_token():
    """NO_PROJECT in the allow-list is written as null and read back as the marker; '-' stays an id."""
    tokens = ViewerTokens(KEY)
    token = tokens.issue("acme", READER, projects=[NO_PROJECT, "-"])
    body = token.split(".")[1]
    assert json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))["p"] == [None, "-"]
    assert tokens.verify(token).projects == (NO_PROJECT, "-")


def _resign_payload(token: str, **changes: object) -> str:
    version, body, mac = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload.update(changes)
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    return f"{version}.{forged}.{mac}"


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda t: _resign_payload(t, t="globex"), id="other-tenant"),
        pytest.param(lambda t: _resign_payload(t, p=None), id="widened-projects"),
        pytest.param(lambda t: _resign_payload(t, exp=int(time.time()) + 10**6), id="longer-life"),
        pytest.param(lambda t: t[:-2] + ("AA" if t[-2:] != "AA" else "BB"), id="mac-changed"),
        pytest.param(lambda t: t.replace("v1.", "v2.", 1), id="version"),
        pytest.param(lambda t: t.split(".")[0] + "." + t.split(".")[1], id="no-mac"),
        pytest.param(lambda _t: "", id="empty"),
        pytest.param(lambda _t: "v1.é.é", id="not-base64"),
        pytest.param(lambda t: t + "A" * 9000, id="huge"),
    ],
)
def test_tampered_tokens_are_refused(tamper):
    """Changing any part of a token makes it invalid."""
    tokens = ViewerTokens(KEY)
    token = tokens.issue("acme", READER, projects=["p1"])
    with pytest.raises(InvalidViewerTokenError):
        tokens.verify(tamper(token))


def test_another_key_and_expiry_are_refused():
    """A token of another key, an expired one and one issued in the future are refused."""
    tokens = ViewerTokens(KEY)
    with pytest.raises(InvalidViewerTokenError):
        tokens.verify(ViewerTokens("x" * 40).issue("acme", READER))
    with pytest.raises(InvalidViewerTokenError, match="expired"):
        tokens.verify(tokens.issue("acme", READER, now=time.time() - 3600))
    with pytest.raises(InvalidViewerTokenError):
        tokens.verify(tokens.issue("acme", READER, now=time.time() + 3600))


def test_keys_rotate():
    """Tokens are signed with the first key and accepted with any of them."""
    old, new = ViewerTokens("o" * 40), ViewerTokens(["n" * 40, "o" * 40])
    assert new.verify(old.issue("acme", READER)).tenant == "acme"
    with pytest.raises(InvalidViewerTokenError):
        old.verify(new.issue("acme", READER))


def test_weak_keys_and_long_lives_are_refused():
    """Keys under 32 bytes and lifetimes beyond max_ttl are configuration errors."""
    with pytest.raises(AuditValidationError, match="32 bytes"):
        ViewerTokens("short")
    tokens = ViewerTokens(KEY)
    with pytest.raises(AuditValidationError):
        tokens.issue("acme", READER, ttl=timedelta(days=2))
