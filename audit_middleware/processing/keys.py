r"""Which key names hold secrets: the words of a name, and the denylists.

A key is split into lowercase *words* at separators (anything but a letter or digit:
``_``, ``-``, space, ``.``, ...) and at camelCase boundaries, and a leading ``http`` word
is dropped (a WSGI environ spells headers ``HTTP_AUTHORIZATION``). The words joined are
the *normalised* key, so ``X-API-Key``, ``x_api_key``, ``apiKey``, ``API KEY`` and
``HTTP_X_API_KEY`` are one name (``xapikey``). ``Redactor`` denies a key when

* its normalised form equals a name of the denylist (:data:`DEFAULT_DENYLIST`, or the
  ``keys`` given, plus ``extra_keys``, normalised alike), or
* its normalised form contains one of :data:`DENIED_SUBSTRINGS` (``password``,
  ``passwd``, ``passphrase``, ``secret``, ``token``, ``apikey``, ``privatekey``,
  ``credential``, ``authorization``, ``jwt``, ``bearer``), which catches ``db_password``,
  ``x-api-key``, ``github_token``, ``clientSecret``, ``Proxy-Authorization`` and
  ``aws_credentials``, or
* one of its words is one of :data:`DENIED_WORDS` (``auth``, ``pwd``, ``pass``): short
  names that are credentials as a word (``basic_auth``, ``x-auth``, ``user_pwd``) but
  would hit ``author`` or ``compass`` as substrings,

unless it equals a name of ``allow_keys`` (normalised alike). The substring rules also
hit harmless names such as ``token_type``, ``max_tokens``, ``password_changed_at`` or
``secretary``; those are masked, the safe mistake. Exempt the ones you need with
``allow_keys``: it matches whole names only, so allowing ``token_type`` does not allow
``token``. Short ambiguous names (``session``, ``cookie``, ``otp``, ``pin``) are exact
names only, so ``session_expires`` or ``cookie_consent`` stay readable.

>>> words("HTTP_X_API_KEY"), normalise("basicAuth")
(['x', 'api', 'key'], 'basicauth')
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["DEFAULT_DENYLIST", "DENIED_SUBSTRINGS", "DENIED_WORDS", "DROPPED_HEADERS", "normalise", "words"]

DEFAULT_DENYLIST: Final[frozenset[str]] = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "api_key",
        "apikey",
        "authorization",
        "auth",
        "cookie",
        "set_cookie",
        "csrf",
        "csrftoken",
        "xsrf",
        "session",
        "sessionid",
        "private_key",
        "ssh_private_key",
        "credentials",
        "cookies",
        "basicauth",
        "xauth",
        "otp",
        "pin",
        "ssn",
        "card_number",
        "cvv",
    }
)
"""Key names whose values are masked, matched whole on the normalised key."""

DENIED_SUBSTRINGS: Final[tuple[str, ...]] = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "privatekey",
    "credential",
    "authorization",
    "jwt",
    "bearer",
)
"""A normalised key containing one of these is masked (normalised: ``api_key`` is ``apikey``)."""

DENIED_WORDS: Final[frozenset[str]] = frozenset({"auth", "pwd", "pass"})
"""A key with one of these as a word (``basic_auth``, ``userPwd``) is masked."""

DROPPED_HEADERS: Final[frozenset[str]] = frozenset(
    {"authorization", "proxyauthorization", "cookie", "setcookie"}
)
"""Normalised header names never captured, whatever ``allow_keys`` says."""

# Words of a key: an acronym (before a capitalised word), a capitalised or lowercase word,
# digits, or a run of other letters.
_WORDS: Final = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+|[^\W\d_]+")


def words(name: str) -> list[str]:
    """The lowercase words of a key, without a leading ``http`` (WSGI's ``HTTP_`` prefix)."""
    found = [word.lower() for word in _WORDS.findall(name)]
    if len(found) > 1 and found[0] == "http":
        del found[0]
    return found


def normalise(name: str) -> str:
    """The form keys are matched in: the words of the key, joined (``X-Api-Key`` is ``xapikey``)."""
    return "".join(words(name))
