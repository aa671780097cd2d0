"""Small, pure parsers for request metadata: request id, trace id, user agent, header text.

Each takes what a client sent and returns a value safe to store, or ``None``; none of
them raises on bad input, because a malformed header must never break the request.
"""

from __future__ import annotations

import codecs
import re

from audit_middleware.model.ids import random_bytes

__all__ = [
    "HEADER_MAX_BYTES",
    "REQUEST_ID_MAX_CHARS",
    "USER_AGENT_LIMIT",
    "decode_header",
    "new_request_id",
    "trace_id_from_traceparent",
    "truncate_user_agent",
    "valid_request_id",
]

REQUEST_ID_MAX_CHARS = 128
"""Longest incoming request id that is kept."""
USER_AGENT_LIMIT = 512
"""Default number of user-agent characters kept."""
HEADER_MAX_BYTES = 16 * 1024
"""Default number of bytes of a header value that :func:`decode_header` decodes."""

_REQUEST_ID = re.compile(rf"[A-Za-z0-9._:-]{{1,{REQUEST_ID_MAX_CHARS}}}")
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
_TRACEPARENT_CHARS = 55  # "00-" + 32 + "-" + 16 + "-" + 2
# Unicode category Cc: C0 controls, DEL and C1 controls. They can forge line breaks or
# terminal escapes in logs and viewers.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_REPLACEMENT = "\ufffd"


def valid_request_id(value: str | None) -> str | None:
    """Return an incoming ``X-Request-ID`` if well formed, else ``None``.

    Well formed means 1 to 128 characters, each an ASCII letter, digit, ``.``, ``_``,
    ``:`` or ``-``: enough for UUIDs, ULIDs and the ids of common proxies and tracers,
    and nothing that could break a log line or a query. The value is taken exactly as
    given: surrounding whitespace makes it invalid.

    >>> valid_request_id("req-42"), valid_request_id("a b")
    ('req-42', None)
    """
    if value is None or len(value) > REQUEST_ID_MAX_CHARS or not _REQUEST_ID.fullmatch(value):
        return None
    return value


def new_request_id() -> str:
    """A fresh random request id: 32 lowercase hex characters (128 random bits)."""
    return random_bytes(16).hex()  # from the pooled CSPRNG bytes: no system call per request


def trace_id_from_traceparent(value: str | None) -> str | None:
    """The 32-hex trace id of a W3C ``traceparent`` header, or ``None`` if it is invalid.

    The header is ``version-traceid-parentid-flags`` in lowercase hex of 2, 32, 16 and 2
    digits. Invalid are: version ``ff``, an all-zero trace id or parent id, uppercase,
    and, for version ``00``, anything after the flags. A later version may carry more
    fields after a ``-``, which are ignored (W3C Trace Context, section 3.2). Spaces and
    tabs around the value are ignored.

    >>> trace_id_from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    '4bf92f3577b34da6a3ce929d0e0e4736'
    """
    if value is None:
        return None
    value = value.strip(" \t")
    match = _TRACEPARENT.match(value)
    if match is None:
        return None
    version, trace_id, parent_id = match.groups()
    if version == "ff" or trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    if len(value) > _TRACEPARENT_CHARS and (version == "00" or value[_TRACEPARENT_CHARS] != "-"):
        return None
    return trace_id


def truncate_user_agent(value: str | None, limit: int = USER_AGENT_LIMIT) -> str | None:
    """A user agent fit to store: at most ``limit`` characters kept, control characters replaced.

    When the value is longer than ``limit``, its first ``limit`` characters are kept
    and the marker ``…[truncated N chars]`` is appended, N being the number of
    characters dropped; the result is then exactly ``limit + len(marker)`` characters
    long. Control characters (Unicode category Cc: U+0000-U+001F, U+007F-U+009F,
    including tab) are each replaced by U+FFFD, so the length does not change and the
    record still shows that something was there. ``None`` stays ``None``.

    >>> truncate_user_agent("curl/8.5.0\\n", limit=8)
    'curl/8.5…[truncated 3 chars]'
    """
    if value is None:
        return None
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    dropped = len(value) - limit
    if dropped > 0:
        value = value[:limit]  # first, so the replacement below works on bounded text
    if not (value.isascii() and value.isprintable()):  # the usual user agent skips the regex
        value = _CONTROL.sub(_REPLACEMENT, value)
    if dropped > 0:
        value += f"\u2026[truncated {dropped} chars]"
    return value


def decode_header(raw: bytes | str | None, limit: int = HEADER_MAX_BYTES) -> str | None:
    """Header text from ASGI bytes or a WSGI string, decoded as UTF-8 without ever raising.

    WSGI (PEP 3333) hands over headers as ``str`` decoded from latin-1: such a string is
    encoded back to its bytes and decoded as UTF-8, so ``"Ã©"`` becomes ``"é"``. A string
    with characters beyond latin-1 is already text and kept (lone surrogates become
    U+FFFD). Invalid UTF-8 becomes U+FFFD. At most ``limit`` bytes are decoded (ASCII
    strings: characters); a character cut in half by that limit is left out rather
    than turned into U+FFFD.

    This keeps the *start* of a long value: never pass forwarded headers through it
    before ``resolve_client_ip``, whose trusted entries are at the end.

    >>> decode_header(b"caf\\xc3\\xa9"), decode_header("caf\\xc3\\xa9"), decode_header(b"\\xff")
    ('café', 'café', '\ufffd')
    """
    if raw is None:
        return None
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if isinstance(raw, str):
        if raw.isascii():  # the common case: nothing to re-decode
            return raw[:limit]
        head = raw[: limit + 1]  # one character more than fits, so the cut below is seen
        try:
            data = head.encode("latin-1")
        except UnicodeEncodeError:
            # Already text: surrogatepass turns lone surrogates into bytes that are
            # invalid UTF-8, which the decoding below replaces.
            data = head.encode("utf-8", "surrogatepass")
    else:
        data = raw
    if len(data) <= limit:
        return data.decode("utf-8", "replace")
    # final=False holds back an incomplete sequence at the end, the one the limit cut.
    return codecs.getincrementaldecoder("utf-8")("replace").decode(data[:limit], final=False)
