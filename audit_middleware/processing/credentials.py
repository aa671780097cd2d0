"""Credentials recognised by their value, whatever key they sit under.

A header list of pairs, a copied request or a connection string put into details carries
credentials under keys that say nothing (``value``, ``url``, a list index). Two forms are
unambiguous enough to mask by their text alone:

* an ``Authorization`` value: ``Bearer``, ``Negotiate`` or ``NTLM`` with an RFC 9110
  token68, ``Basic`` with base64 that decodes to ``user:password`` (so the phrase
  "Basic information" is kept), or ``Digest`` with its parameters;
* the password of a URL's user information (``postgres://app:<password>@db``).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Final

__all__ = ["SCHEME_CHARS", "is_authorization_value", "mask_url_password"]

_TOKEN68_SCHEME: Final = re.compile(r"\s*(?:bearer|negotiate|ntlm)\s+[A-Za-z0-9._~+/-]+=*\s*", re.IGNORECASE)
_BASIC_SCHEME: Final = re.compile(r"\s*basic\s+([A-Za-z0-9+/]+=*)\s*", re.IGNORECASE)
_DIGEST_SCHEME: Final = re.compile(r"\s*digest\s+[A-Za-z_]+\s*=", re.IGNORECASE)
# scheme://user:password@host: the password part (userinfo holds no '/', '@' or white space).
_URL_PASSWORD: Final = re.compile(r"(?<=://)([^/@\s:]*):([^/@\s]+)@")
SCHEME_CHARS: Final = 16
"""A scheme name and its space start within this many characters of an Authorization value."""


def is_authorization_value(text: str) -> bool:
    """Whether ``text`` is the value of an ``Authorization`` header (a credential).

    >>> is_authorization_value("Bearer abc.def"), is_authorization_value("Basic information")
    (True, False)
    """
    if " " not in text[:SCHEME_CHARS]:
        return False
    if _TOKEN68_SCHEME.fullmatch(text) or _DIGEST_SCHEME.match(text):
        return True
    basic = _BASIC_SCHEME.fullmatch(text)
    if basic is None:
        return False
    try:
        return b":" in base64.b64decode(basic[1], validate=True)
    except (binascii.Error, ValueError):
        return False


def mask_url_password(text: str, mask: str) -> str:
    """``text`` with the password of every URL in it replaced by ``mask``.

    >>> mask_url_password("postgres://app:hunter2@db/main", "[REDACTED]")
    'postgres://app:[REDACTED]@db/main'
    """
    if "://" not in text or "@" not in text:
        return text
    return _URL_PASSWORD.sub(lambda match: f"{match[1]}:{mask}@", text)
