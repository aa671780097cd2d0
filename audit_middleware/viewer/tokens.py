"""Short-lived signed viewer tokens: a tenant's audit log, embedded in a page of another site.

An app that shows the viewer somewhere its own login does not reach (a partner portal,
a support tool) issues a token on its back end and passes it in the viewer's URL
(``?token=...``). The token names one tenant, optionally an allow-list of projects
(``NO_PROJECT`` is written as ``null``), and the reader to record; it expires after
minutes, and can read nothing else.

Format: ``v1.<payload>.<mac>``, where the payload is base64url JSON and the MAC is
HMAC-SHA256 over ``"audit-viewer-token.v1." + payload`` (the prefix keeps a MAC made
for another purpose with the same key from passing). The MAC is checked, in constant
time, before the payload is parsed. Keys are at least 32 bytes; several can be given
so a key can be rotated (tokens are signed with the first, accepted with any).

Why HMAC from the standard library and not JWT: the viewer both issues and verifies,
so a shared key is all it needs; one fixed algorithm leaves nothing to negotiate (no
``alg`` header to downgrade), and it adds no dependency.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from audit_middleware.errors import AuditValidationError
from audit_middleware.model.event import Actor
from audit_middleware.model.tenancy import NO_PROJECT, NoProject, ProjectSelector
from audit_middleware.viewer.access import Access

__all__ = ["InvalidViewerTokenError", "ViewerTokens"]

_VERSION = "v1"
_PURPOSE = b"audit-viewer-token.v1."
_MIN_KEY_BYTES = 32
_MAX_TOKEN_CHARS = 8192
_CLOCK_SKEW_S = 60
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


class InvalidViewerTokenError(AuditValidationError):
    """A viewer token is malformed, forged or expired; the message says which, for the reader."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key(secret: str | bytes) -> bytes:
    key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if len(key) < _MIN_KEY_BYTES:
        raise AuditValidationError(
            f"a viewer token key needs at least {_MIN_KEY_BYTES} bytes; make one with "
            "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
    return key


class ViewerTokens:
    """Issues and verifies viewer tokens with a secret key (or several, newest first).

    >>> tokens = ViewerTokens("k" * 32)
    >>> token = tokens.issue("acme", Actor(id="u1", email="ann@acme.example"))
    >>> tokens.verify(token).tenant
    'acme'
    """

    def __init__(
        self,
        secret: str | bytes | Sequence[str | bytes],
        *,
        ttl: timedelta = timedelta(minutes=15),
        max_ttl: timedelta = timedelta(hours=12),
    ) -> None:
        secrets_given = [secret] if isinstance(secret, str | bytes) else list(secret)
        if not secrets_given:
            raise AuditValidationError("ViewerTokens needs at least one secret key")
        self._keys = [_key(item) for item in secrets_given]
        if ttl <= timedelta(0) or ttl > max_ttl:
            raise AuditValidationError(f"a token's lifetime must be positive and at most {max_ttl}")
        self.ttl = ttl
        self.max_ttl = max_ttl

    def issue(
        self,
        tenant: str,
        reader: Actor,
        *,
        projects: Iterable[ProjectSelector] | None = None,
        tenant_name: str | None = None,
        ttl: timedelta | None = None,
        now: float | None = None,
    ) -> str:
        """A token for ``reader`` to see ``tenant`` (only ``projects``, when given) for ``ttl``."""
        lifetime = self.ttl if ttl is None else ttl
        if lifetime <= timedelta(0) or lifetime > self.max_ttl:
            raise AuditValidationError(f"a token's lifetime must be positive and at most {self.max_ttl}")
        access = Access(tenant, reader, projects=None if projects is None else tuple(projects))
        issued = int(time.time() if now is None else now)
        payload: dict[str, Any] = {
            "t": access.tenant,
            "p": None
            if access.projects is None
            else [None if isinstance(project, NoProject) else project for project in access.projects],
            "r": {key: value for key, value in _reader(reader).items() if value},
            "iat": issued,
            "exp": issued + int(lifetime.total_seconds()),
            "n": secrets.token_urlsafe(8),  # two tokens issued in the same second still differ
        }
        if tenant_name:
            payload["tn"] = tenant_name
        body = _b64(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        return f"{_VERSION}.{body}.{_b64(self._mac(self._keys[0], body))}"

    def verify(self, token: str, *, now: float | None = None) -> Access:
        """The access a token grants; ``InvalidViewerTokenError`` when it is malformed, forged or expired."""
        if not isinstance(token, str) or len(token) > _MAX_TOKEN_CHARS:
            raise InvalidViewerTokenError("this viewer link is not valid")
        version, _, rest = token.partition(".")
        body, _, mac_text = rest.partition(".")
        if version != _VERSION or not _BASE64URL.fullmatch(body) or not _BASE64URL.fullmatch(mac_text):
            raise InvalidViewerTokenError("this viewer link is not valid")
        try:
            mac = _unb64(mac_text)
        except (binascii.Error, ValueError):
            raise InvalidViewerTokenError("this viewer link is not valid") from None
        if not any(hmac.compare_digest(mac, self._mac(key, body)) for key in self._keys):
            raise InvalidViewerTokenError("this viewer link is not valid")
        try:
            payload = json.loads(_unb64(body))
            tenant, expires, issued = payload["t"], int(payload["exp"]), int(payload["iat"])
            reader = Actor(**{key: payload["r"].get(key) for key in ("id", "name", "email")})
            projects = payload.get("p")
            if projects is not None:
                projects = [NO_PROJECT if project is None else project for project in projects]
            access = Access(tenant, reader, projects=projects, tenant_name=payload.get("tn"))
        except (ValueError, KeyError, TypeError, AttributeError, AuditValidationError):
            raise InvalidViewerTokenError("this viewer link is not valid") from None
        moment = time.time() if now is None else now
        if moment >= expires:
            raise InvalidViewerTokenError("this viewer link has expired: open the audit log again in the app")
        if issued > moment + _CLOCK_SKEW_S or expires - issued > self.max_ttl.total_seconds():
            raise InvalidViewerTokenError("this viewer link is not valid")
        return access

    @staticmethod
    def _mac(key: bytes, body: str) -> bytes:
        return hmac.new(key, _PURPOSE + body.encode("ascii"), hashlib.sha256).digest()


def _reader(actor: Actor) -> dict[str, str | None]:
    return {"id": actor.id, "name": actor.name, "email": actor.email}
