"""Request metadata parsers: request id, traceparent, user agent, header decoding."""

from __future__ import annotations

import re
import string
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit_middleware.capture.headers import (
    HEADER_MAX_BYTES,
    decode_header,
    new_request_id,
    trace_id_from_traceparent,
    truncate_user_agent,
    valid_request_id,
)

REQUEST_ID_CHARS = string.ascii_letters + string.digits + "._:-"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"

# --- request id --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("abc", "abc", id="simple"),
        pytest.param(
            "f47ac10b-58cc-4372-a567-0e02b2c3d479", "f47ac10b-58cc-4372-a567-0e02b2c3d479", id="uuid"
        ),
        pytest.param("1-5759e988.bd862e3f:x_y", "1-5759e988.bd862e3f:x_y", id="punctuation"),
        pytest.param("a" * 128, "a" * 128, id="max-length"),
        pytest.param("a" * 129, None, id="too-long"),
        pytest.param("", None, id="empty"),
        pytest.param(None, None, id="none"),
        pytest.param("a b", None, id="space"),
        pytest.param(" abc", None, id="leading-space"),
        pytest.param("abc\n", None, id="trailing-newline"),
        pytest.param("abc\r\nX-Admin: 1", None, id="header-injection"),
        pytest.param("Root=1", None, id="equals"),
        pytest.param("caf\u00e9", None, id="non-ascii"),
        pytest.param("\uff11\uff12", None, id="fullwidth-digits"),
        pytest.param("a/b", None, id="slash"),
        pytest.param('"quoted"', None, id="quote"),
    ],
)
def test_valid_request_id(value, expected):
    """Only 1..128 characters of [A-Za-z0-9._:-] are accepted, exactly as given."""
    assert valid_request_id(value) == expected


@given(st.text())
def test_valid_request_id_accepts_only_the_documented_alphabet(value):
    """Any text is either returned unchanged and well formed, or refused."""
    result = valid_request_id(value)
    well_formed = 1 <= len(value) <= 128 and all(c in REQUEST_ID_CHARS for c in value)
    assert result == (value if well_formed else None)


@given(st.text(REQUEST_ID_CHARS, min_size=1, max_size=128))
def test_valid_request_id_accepts_every_well_formed_id(value):
    """Every id made of the allowed characters and length is kept."""
    assert valid_request_id(value) == value


def test_new_request_id():
    """A new request id is 32 lowercase hex characters, differs each time, and is itself valid."""
    first, second = new_request_id(), new_request_id()
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert first != second
    assert valid_request_id(first) == first


# --- traceparent -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(TRACEPARENT, TRACE_ID, id="valid"),
        pytest.param(f"00-{TRACE_ID}-{PARENT_ID}-00", TRACE_ID, id="not-sampled"),
        pytest.param(f" \t{TRACEPARENT} ", TRACE_ID, id="surrounding-whitespace"),
        pytest.param(f"01-{TRACE_ID}-{PARENT_ID}-01-future", TRACE_ID, id="future-version-extra-field"),
        pytest.param(f"01-{TRACE_ID}-{PARENT_ID}-01", TRACE_ID, id="future-version"),
        pytest.param(None, None, id="none"),
        pytest.param("", None, id="empty"),
        pytest.param(f"00-{TRACE_ID}-{PARENT_ID}-01-extra", None, id="v00-extra-field"),
        pytest.param(f"00-{TRACE_ID}-{PARENT_ID}-011", None, id="v00-long-flags"),
        pytest.param(f"01-{TRACE_ID}-{PARENT_ID}-01x", None, id="future-version-no-dash"),
        pytest.param(f"ff-{TRACE_ID}-{PARENT_ID}-01", None, id="version-ff"),
        pytest.param(f"00-{'0' * 32}-{PARENT_ID}-01", None, id="zero-trace-id"),
        pytest.param(f"00-{TRACE_ID}-{'0' * 16}-01", None, id="zero-parent-id"),
        pytest.param(TRACEPARENT.upper(), None, id="uppercase"),
        pytest.param(f"00-{TRACE_ID[:-1]}-{PARENT_ID}-01", None, id="short-trace-id"),
        pytest.param(f"00-{TRACE_ID}0-{PARENT_ID[1:]}-01", None, id="shifted-dash"),
        pytest.param(f"00-{TRACE_ID}-{PARENT_ID}-1", None, id="short-flags"),
        pytest.param(f"0-{TRACE_ID}-{PARENT_ID}-01", None, id="short-version"),
        pytest.param(f"00_{TRACE_ID}_{PARENT_ID}_01", None, id="wrong-separator"),
        pytest.param(f"00-{TRACE_ID[:-1]}g-{PARENT_ID}-01", None, id="non-hex"),
        pytest.param(f"00-{TRACE_ID[:-1]}\uff11-{PARENT_ID}-01", None, id="non-ascii"),
        pytest.param(TRACEPARENT + "\n", None, id="trailing-newline"),
    ],
)
def test_trace_id_from_traceparent(value, expected):
    """The trace id of a valid W3C traceparent is returned; anything malformed gives None."""
    assert trace_id_from_traceparent(value) == expected


@given(
    version=st.text("0123456789abcdef", min_size=2, max_size=2),
    trace_id=st.text("0123456789abcdef", min_size=32, max_size=32),
    parent_id=st.text("0123456789abcdef", min_size=16, max_size=16),
    flags=st.text("0123456789abcdef", min_size=2, max_size=2),
)
def test_traceparent_accepts_every_valid_header(version, trace_id, parent_id, flags):
    """A well-formed traceparent gives its trace id unless a rule refuses it."""
    refused = version == "ff" or set(trace_id) == {"0"} or set(parent_id) == {"0"}
    expected = None if refused else trace_id
    assert trace_id_from_traceparent(f"{version}-{trace_id}-{parent_id}-{flags}") == expected


@given(st.one_of(st.text(), st.text("0123456789abcdef-", max_size=80)))
def test_traceparent_never_raises_and_returns_only_valid_ids(value):
    """For any text the result is None or a non-zero lowercase 32-hex trace id found in the header."""
    result = trace_id_from_traceparent(value)
    if result is not None:
        assert re.fullmatch(r"[0-9a-f]{32}", result)
        assert result != "0" * 32
        assert value.strip(" \t")[3:35] == result


# --- user agent --------------------------------------------------------------------------


def _marker(dropped: int) -> str:
    return f"\u2026[truncated {dropped} chars]"


@pytest.mark.parametrize(
    ("value", "limit", "expected"),
    [
        pytest.param(None, 512, None, id="none"),
        pytest.param("", 512, "", id="empty"),
        pytest.param("curl/8.5.0", 512, "curl/8.5.0", id="short"),
        pytest.param("a" * 512, 512, "a" * 512, id="exactly-limit"),
        pytest.param("a" * 513, 512, "a" * 512 + _marker(1), id="one-over"),
        pytest.param("a" * 65536, 512, "a" * 512 + "\u2026[truncated 65024 chars]", id="64k"),
        pytest.param("abc", 0, _marker(3), id="limit-zero"),
        pytest.param("Mozilla\r\nX-Forged: 1", 512, "Mozilla\ufffd\ufffdX-Forged: 1", id="crlf"),
        pytest.param(
            "a\x00b\x1b[31mc\x7fd\x85e\x9f", 512, "a\ufffdb\ufffd[31mc\ufffdd\ufffde\ufffd", id="controls"
        ),
        pytest.param("a\tb", 512, "a\ufffdb", id="tab"),
        pytest.param(
            "Mozilla/5.0 (caf\u00e9 \u2603 \U0001f600)",
            512,
            "Mozilla/5.0 (caf\u00e9 \u2603 \U0001f600)",
            id="unicode",
        ),
        pytest.param("\x00" * 10, 4, "\ufffd" * 4 + _marker(6), id="controls-and-cut"),
    ],
)
def test_truncate_user_agent(value, limit, expected):
    """The user agent keeps `limit` characters plus a marker, with control characters replaced."""
    assert truncate_user_agent(value, limit) == expected


def test_truncate_user_agent_rejects_negative_limit():
    """A negative limit is a programming error and says so."""
    with pytest.raises(ValueError, match="limit must be >= 0"):
        truncate_user_agent("x", -1)


@given(st.text(), st.integers(0, 600))
def test_truncate_user_agent_bounds_and_cleans(value, limit):
    """The result is bounded by limit plus the marker, keeps the start, and holds no control characters."""
    result = truncate_user_agent(value, limit)
    assert result is not None
    dropped = max(len(value) - limit, 0)
    assert len(result) == min(len(value), limit) + (len(_marker(dropped)) if dropped else 0)
    assert not any(unicodedata.category(c) == "Cc" for c in result)
    kept = value[:limit]
    assert all(
        r == v or (r == "\ufffd" and unicodedata.category(v) == "Cc")
        for r, v in zip(result[: len(kept)], kept, strict=True)
    )
    assert result.endswith(_marker(dropped)) == (dropped > 0)


# --- header decoding ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(None, None, id="none"),
        pytest.param(b"", "", id="empty-bytes"),
        pytest.param("", "", id="empty-str"),
        pytest.param(b"curl/8.5.0", "curl/8.5.0", id="ascii-bytes"),
        pytest.param("curl/8.5.0", "curl/8.5.0", id="ascii-str"),
        pytest.param("caf\u00e9".encode(), "caf\u00e9", id="asgi-utf8"),
        pytest.param("caf\u00e9".encode().decode("latin-1"), "caf\u00e9", id="wsgi-utf8-as-latin1"),
        pytest.param(b"caf\xe9", "caf\ufffd", id="asgi-invalid-utf8"),
        pytest.param("caf\xe9", "caf\ufffd", id="wsgi-invalid-utf8"),
        pytest.param(b"\xff\xfe\x00a", "\ufffd\ufffd\x00a", id="asgi-garbage"),
        pytest.param(b"abc\xe2\x82", "abc\ufffd", id="truncated-sequence-not-cut-by-limit"),
        pytest.param("\u2603 snow", "\u2603 snow", id="already-text"),
        pytest.param("a\udcff\ud800b", "a\ufffd\ufffd\ufffd\ufffd\ufffd\ufffdb", id="lone-surrogates"),
    ],
)
def test_decode_header(raw, expected):
    """ASGI bytes and WSGI latin-1 strings decode as UTF-8, invalid bytes as U+FFFD."""
    assert decode_header(raw) == expected


def test_decode_header_bounds_length():
    """A 64 KiB header decodes only its first 16 KiB."""
    assert decode_header(b"x" * 65536) == "x" * HEADER_MAX_BYTES
    assert decode_header("x" * 65536) == "x" * HEADER_MAX_BYTES
    assert decode_header("\u00ff" * 65536) == "\ufffd" * HEADER_MAX_BYTES  # WSGI: each 0xFF is invalid
    assert len(decode_header("\u2603" * 65536).encode()) <= HEADER_MAX_BYTES  # text beyond latin-1


def test_decode_header_leaves_out_a_character_cut_by_the_limit():
    """A multi-byte character split by the limit is left out, not replaced."""
    raw = b"a" * 9 + "\u20ac".encode()  # the euro sign is 3 bytes: 9 + 3 > 10
    assert decode_header(raw, limit=10) == "a" * 9
    assert decode_header(raw.decode("latin-1"), limit=10) == "a" * 9
    assert decode_header(raw, limit=12) == "a" * 9 + "\u20ac"


def test_decode_header_rejects_negative_limit():
    """A negative limit is a programming error and says so."""
    with pytest.raises(ValueError, match="limit must be >= 0"):
        decode_header(b"x", limit=-1)


@given(st.binary(max_size=300), st.integers(0, 200))
def test_decode_header_bytes_never_raise(raw, limit):
    """Any bytes decode to storable text (no lone surrogates) from at most `limit` bytes."""
    result = decode_header(raw, limit=limit)
    assert result is not None
    result.encode("utf-8")  # raises on a lone surrogate
    assert len(result) <= limit
    assert result == decode_header(raw.decode("latin-1"), limit=limit)


@given(st.text(max_size=100))
def test_decode_header_round_trips_utf8(text):
    """Valid UTF-8 within the limit comes back unchanged, from bytes and from WSGI strings."""
    raw = text.encode("utf-8", "surrogatepass")
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        assert "\ufffd" in (decode_header(raw) or "")
    else:
        assert decode_header(raw) == text
        assert decode_header(raw.decode("latin-1")) == text


@given(st.text(), st.integers(0, 50))
def test_decode_header_text_never_raises(text, limit):
    """Any string, latin-1 or not, decodes to storable text without raising."""
    result = decode_header(text, limit=limit)
    assert result is not None
    result.encode("utf-8")
