r"""Redaction of secrets and personal data before an audit record leaves the process.

Pure: no framework imports, no I/O. One :class:`Redactor` is built from configuration
at start-up and shared by every thread; its methods never mutate their input.

Key matching (``processing.keys``): a key is split into words, so ``X-API-Key``,
``apiKey`` and a WSGI environ's ``HTTP_X_API_KEY`` are one name, and is denied by whole
names, substrings (``password``, ``token``, ...) or words (``auth``, ``pwd``), unless
``allow_keys`` names it. ``keys`` replaces the exact-name list; the other rules always
apply.

Values: credentials recognised by their text (``processing.credentials``: Authorization
values, URL passwords) are masked under any key; a list of ``(name, value)`` pairs is
judged by its names; app objects are read by their fields (``processing.shapes``).

>>> Redactor().redact_mapping({"user": "ana", "db_password": "hunter2", "tokens": [{"id": 1}]})
{'user': 'ana', 'db_password': '[REDACTED]', 'tokens': '[REDACTED]'}
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Any, Final

from audit_middleware.capture.clientip import truncate_forwarded_element, truncate_ip
from audit_middleware.model.changes import join_path, split_path
from audit_middleware.processing.credentials import SCHEME_CHARS, is_authorization_value, mask_url_password
from audit_middleware.processing.keys import (
    DEFAULT_DENYLIST,
    DENIED_SUBSTRINGS,
    DENIED_WORDS,
    DROPPED_HEADERS,
    normalise,
    words,
)
from audit_middleware.processing.shapes import NO_FIELDS, fields_of, is_plain, text_of

__all__ = [
    "CYCLE_MARKER",
    "DEFAULT_DENYLIST",
    "DENIED_SUBSTRINGS",
    "DENIED_WORDS",
    "DEPTH_MARKER",
    "DROPPED_HEADERS",
    "MAX_DEPTH",
    "Redactor",
]

MAX_DEPTH: Final = 32
"""Deepest container nesting redacted; the top-level mapping is level 1."""

DEPTH_MARKER: Final = "[REDACTED: nested too deep]"
"""Replaces a container nested deeper than :data:`MAX_DEPTH`: unread, so it may hold secrets."""

CYCLE_MARKER: Final = "[REDACTED: cycle]"
"""Replaces a container that contains itself."""

_PSEUDONYM_DOMAIN: Final = "@pseudonym.invalid"
_MIN_KEY_BYTES: Final = 16
# Distinct keys remembered per Redactor: records repeat their shapes, and the bound stops
# a flood of unique keys (from request bodies) from growing memory.
_DECISION_CACHE_SIZE: Final = 4096
# Exact types that hold no keys: most values, returned without the slower abstract-class checks.
_SCALARS: Final = frozenset({str, int, float, bool, type(None), bytes})
_CONTAINERS: Final = (Mapping, list, tuple, set, frozenset)


class Redactor:
    """Masks secrets in records; truncates IPs and pseudonymises emails when asked.

    >>> redactor = Redactor(allow_keys=["token_type"], truncate_ips=True)
    >>> redactor.redact_mapping({"token_type": "bearer", "access_token": "abc"})
    {'token_type': 'bearer', 'access_token': '[REDACTED]'}
    >>> redactor.ip("203.0.113.77")
    '203.0.113.0'
    """

    __slots__ = ("_allow", "_decisions", "_deny", "_email_key", "_mask", "_truncate_ips")

    def __init__(
        self,
        *,
        keys: Iterable[str] = DEFAULT_DENYLIST,
        extra_keys: Iterable[str] = (),
        allow_keys: Iterable[str] = (),
        mask: str = "[REDACTED]",
        truncate_ips: bool = False,
        email_pseudonym_key: bytes | None = None,
    ) -> None:
        if email_pseudonym_key is not None and len(email_pseudonym_key) < _MIN_KEY_BYTES:
            # A short key can be guessed, and then every pseudonym reversed by hashing known emails.
            raise ValueError(
                f"email_pseudonym_key must be at least {_MIN_KEY_BYTES} random bytes (32 recommended)"
            )
        self._deny = frozenset(
            normalise(k) for k in (*_names(keys, "keys"), *_names(extra_keys, "extra_keys"))
        )
        self._allow = frozenset(normalise(k) for k in _names(allow_keys, "allow_keys"))
        self._mask = mask
        self._truncate_ips = truncate_ips
        self._email_key = email_pseudonym_key
        self._decisions: dict[object, bool] = {}

    @property
    def truncate_ips(self) -> bool:
        """Whether :meth:`ip` truncates addresses."""
        return self._truncate_ips

    @property
    def email_pseudonym_key(self) -> bytes | None:
        """The key :meth:`email` pseudonymises with; ``None`` leaves emails as they are."""
        return self._email_key

    def is_denied(self, key: object) -> bool:
        """Whether values under this key are masked (see the module docstring for the rules).

        >>> Redactor().is_denied("X-API-Key"), Redactor().is_denied("author")
        (True, False)
        """
        decision = self._decisions.get(key)
        if decision is None:
            parts = words(key if isinstance(key, str) else str(key))
            name = "".join(parts)
            decision = name not in self._allow and (
                name in self._deny
                or any(part in name for part in DENIED_SUBSTRINGS)
                or not DENIED_WORDS.isdisjoint(parts)
            )
            if len(self._decisions) < _DECISION_CACHE_SIZE:
                self._decisions[key] = decision
        return decision

    def redact_mapping(self, data: Mapping[str, Any] | None) -> dict[str, Any]:
        """A copy of ``data`` with every value under a denied key masked, at any depth.

        Recurses into mappings, lists and tuples; other values are returned as given.
        Parts nested deeper than :data:`MAX_DEPTH` or cyclic become a marker string.

        >>> Redactor().redact_mapping({"items": [{"name": "a", "secret": {"k": 1}}]})
        {'items': [{'name': 'a', 'secret': '[REDACTED]'}]}
        """
        if not data:
            return {}
        return self._mapping(data, 1, [id(data)])

    def redact_changes(
        self,
        before: Mapping[str, Any] | None,
        after: Mapping[str, Any] | None,
        fields: Iterable[str],
    ) -> tuple[dict[str, Any], dict[str, Any], tuple[str, ...]]:
        r"""Redact a change set given as plain values: ``(before, after, fields)``.

        A denied field stays in ``fields``, so readers see that it changed, while its
        values are masked on both sides. A path running through a denied key is cut
        at that key, since the key names below it may be secrets themselves. Paths use
        ``audit_middleware.model.changes``'s convention: ``.`` joins keys, and inside a key ``\.``
        is a dot and ``\\`` a backslash. The fields come back sorted and without duplicates.

        >>> Redactor().redact_changes({"password": "a"}, {"password": "b"}, ["password"])
        ({'password': '[REDACTED]'}, {'password': '[REDACTED]'}, ('password',))
        >>> Redactor().redact_changes({}, {"tokens": {"ghp_x": 1}}, ["tokens.ghp_x"])[2]
        ('tokens',)
        """
        return (
            self.redact_mapping(before),
            self.redact_mapping(after),
            tuple(sorted({self._cut_path(field) for field in fields})),
        )

    def redact_headers(self, headers: Mapping[str, str] | None) -> dict[str, str]:
        """A copy of the headers without credentials.

        ``Authorization``, ``Proxy-Authorization``, ``Cookie`` and ``Set-Cookie`` are
        dropped entirely; other denied names keep their name with a masked value.

        >>> Redactor().redact_headers({"Cookie": "s=1", "X-Api-Key": "k", "Accept": "*/*"})
        {'X-Api-Key': '[REDACTED]', 'Accept': '*/*'}
        """
        if not headers:
            return {}
        kept: dict[str, str] = {}
        for name, value in headers.items():
            if normalise(name) in DROPPED_HEADERS:
                continue
            kept[name] = self._mask if self.is_denied(name) else self._text(value)
        return kept

    def ip(self, value: str | None) -> str | None:
        """The address, truncated when ``truncate_ips`` is on.

        IPv4 keeps its /24 network (``x.y.z.0``), IPv6 its /48 network; an IPv4-mapped
        IPv6 address is truncated as IPv4 and written as IPv4. When truncating, a value
        that is not an IP address gives ``None``, since it may still hold the address.

        >>> Redactor(truncate_ips=True).ip("2001:db8:1234:5678::1")
        '2001:db8:1234::'
        """
        if value is None or not self._truncate_ips:
            return value
        try:
            return truncate_ip(value)
        except ValueError:
            return None

    def forwarded(self, element: str) -> str:
        """An element of the forwarded chain, every address in it truncated when ``truncate_ips``.

        Any form is read (``host:port``, ``[v6]:port``, RFC 7239 ``for=``/``by=`` with
        quotes and parameters); an element that cannot be read is masked.

        >>> Redactor(truncate_ips=True).forwarded('for="198.51.100.77:4711";proto=https')
        'for=198.51.100.0;proto=https'
        """
        if not self._truncate_ips:
            return element
        truncated = truncate_forwarded_element(element)
        return self._mask if truncated is None else truncated

    def email(self, value: str | None) -> str | None:
        """A keyed pseudonym of the email when ``email_pseudonym_key`` is set, else the email.

        The pseudonym is ``u-<24 hex digits of HMAC-SHA256(key, trimmed lowercased
        email)>@pseudonym.invalid``: stable across processes sharing the key, not
        reversible without it, and still shaped like an email, so dashboards can group
        by it. A pseudonym or a blank value is returned unchanged.

        >>> Redactor(email_pseudonym_key=b"k" * 32).email("Ana@Example.com")
        'u-ee715d102aea93a80cf5b2e5@pseudonym.invalid'
        """
        if value is None or self._email_key is None:
            return value
        address = value.strip().lower()
        if not address or address.endswith(_PSEUDONYM_DOMAIN):
            return value
        # surrogatepass: text decoded from bad UTF-8 must not make auditing raise.
        digest = hmac.new(self._email_key, address.encode("utf-8", "surrogatepass"), hashlib.sha256)
        return f"u-{digest.hexdigest()[:24]}{_PSEUDONYM_DOMAIN}"

    def _mapping(self, data: Mapping[Any, Any], depth: int, walked: list[int]) -> dict[Any, Any]:
        """Redact one mapping whose id is already on ``walked``."""
        # Every record passes here on the delivery thread: the cached decision and the common
        # leaves (text, numbers) are handled inline, without a method call each.
        decisions, mask, text_of_value = self._decisions, self._mask, self._text
        redacted: dict[Any, Any] = {}
        for key, value in data.items():
            denied = decisions.get(key)
            if denied is None:
                denied = self.is_denied(key)
            kind = type(value)
            if denied:
                redacted[key] = mask
            elif kind is str:
                redacted[key] = text_of_value(value)
            elif kind in _SCALARS:
                redacted[key] = value
            else:
                redacted[key] = self._value(value, depth + 1, walked)
        return redacted

    def _value(self, value: Any, depth: int, walked: list[int]) -> Any:
        """Redact a value found at ``depth``: containers and objects are rebuilt, text checked."""
        kind = type(value)
        if kind is str:
            return self._text(value)
        if kind in _SCALARS:
            return value
        container = self._readable(value)
        if not isinstance(container, _CONTAINERS):
            return container  # a leaf, already safe
        if depth > MAX_DEPTH:
            return DEPTH_MARKER
        if id(value) in walked:
            return CYCLE_MARKER
        walked.append(id(value))
        redacted: Any
        if isinstance(container, Mapping):
            redacted = self._mapping(container, depth, walked)
        elif isinstance(container, tuple) and hasattr(container, "_fields"):  # a named tuple
            redacted = self._mapping(dict(zip(container._fields, container, strict=True)), depth, walked)
        elif isinstance(container, list | tuple):
            items = [self._item(item, depth + 1, walked) for item in container]
            redacted = items if isinstance(container, list) else tuple(items)
        else:  # a set: its members may be objects too; a list in a stable order
            redacted = sorted((self._value(item, depth + 1, walked) for item in container), key=repr)
        walked.pop()
        return redacted

    def _item(self, item: Any, depth: int, walked: list[int]) -> Any:
        """A list item; a ``(name, value)`` pair (a header list, say) is judged by its name."""
        kind = type(item)
        if (kind is tuple or kind is list) and len(item) == 2 and isinstance(item[0], str):
            name, value = item
            pair = (name, self._mask if self.is_denied(name) else self._value(value, depth + 1, walked))
            return pair if kind is tuple else list(pair)
        return self._value(item, depth, walked)

    def _readable(self, value: Any) -> Any:
        """A container to walk (an app object as its fields), or the safe form of a leaf."""
        if isinstance(value, _CONTAINERS) or is_plain(value):
            return value
        text = text_of(value)
        if text is not None:
            return self._text(text)
        # An app object: redacted field by field, never stored as its repr.
        fields = fields_of(value)
        return f"[REDACTED: {type(value).__name__}]" if fields is NO_FIELDS else fields

    def _text(self, text: str) -> str:
        """``text``, or the mask when it is an Authorization value; a URL's password is masked."""
        if " " not in text[:SCHEME_CHARS] and ("://" not in text or "@" not in text):
            return text  # neither form fits: a scheme needs its space, a URL password "://" and "@"
        if is_authorization_value(text):
            return self._mask
        return mask_url_password(text, self._mask)

    def _cut_path(self, path: str) -> str:
        """The path up to its first denied key that has keys below it."""
        if "." not in path:
            return path
        keys = split_path(path)
        for depth, key in enumerate(keys[:-1], start=1):
            if self.is_denied(key):
                return join_path(keys[:depth])
        return path


def _names(names: Iterable[str], parameter: str) -> tuple[str, ...]:
    """The names of an option, refusing a bare string (it would iterate as letters)."""
    if isinstance(names, str):
        raise TypeError(f"{parameter} takes a list of names, not a single string: [{names!r}]")
    return tuple(names)
