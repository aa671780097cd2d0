"""Tests for audit_middleware.processing.redaction: key rules, recursion, guards, headers, IPs, emails."""

from __future__ import annotations

import collections
import copy
import dataclasses
import datetime
import decimal
import enum
import hashlib
import hmac
import ipaddress
import pathlib
import re
import uuid
from typing import Any

import attrs
import pydantic
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from audit_middleware import record
from audit_middleware.model.changes import diff
from audit_middleware.model.encoding import dumps
from audit_middleware.processing.credentials import is_authorization_value, mask_url_password
from audit_middleware.processing.redaction import (
    CYCLE_MARKER,
    DEFAULT_DENYLIST,
    DEPTH_MARKER,
    MAX_DEPTH,
    Redactor,
)

MASK = "[REDACTED]"
KEY = b"0123456789abcdef0123456789abcdef"


@pytest.fixture
def redactor() -> Redactor:
    """A Redactor with the default rules."""
    return Redactor()


@pytest.mark.parametrize("name", sorted(DEFAULT_DENYLIST))
def test_default_denylist_names_are_masked(redactor: Redactor, name: str) -> None:
    """Every name of the default denylist has its value masked."""
    assert redactor.redact_mapping({name: "v", "other": "v"}) == {name: MASK, "other": "v"}


@pytest.mark.parametrize(
    "name",
    [
        "PassWord",
        "PASSWORD",
        "X-API-Key",
        "x_api_key",
        "API KEY",
        "apiKey",
        "Set-Cookie",
        "setCookie",
        "Session-ID",
        "sessionId",
        "privateKey",
        "Card Number",
        "CVV",
    ],
)
def test_matching_ignores_case_and_separators(redactor: Redactor, name: str) -> None:
    """Keys match whatever their case and their _, - or space separators."""
    assert redactor.redact_mapping({name: "v"}) == {name: MASK}


@pytest.mark.parametrize(
    "name",
    [
        "db_password",
        "x-api-key",
        "github_token",
        "clientSecret",
        "ssh_private_key",
        "accessToken",
        "my-apikey",
    ],
)
def test_substring_rules_catch_compound_names(redactor: Redactor, name: str) -> None:
    """A key containing password, secret, token, api_key or private_key is masked."""
    assert redactor.is_denied(name)


@pytest.mark.parametrize(
    "name",
    ["user", "author", "description", "pinned", "session_expires", "otp_enabled", "cookie_consent", "key"],
)
def test_ordinary_names_are_kept(redactor: Redactor, name: str) -> None:
    """Names that only resemble an exact denylist entry are not masked."""
    assert redactor.redact_mapping({name: "v"}) == {name: "v"}


def test_allow_keys_exempt_exact_names_only() -> None:
    """allow_keys exempts whole normalised names, not the rule that matched them."""
    redactor = Redactor(allow_keys=["token_type", "tokens_count"])
    data = {"token_type": "bearer", "Token-Type": "mac", "tokens_count": 3, "token": "t", "token_types": "x"}
    assert redactor.redact_mapping(data) == {
        "token_type": "bearer",
        "Token-Type": "mac",
        "tokens_count": 3,
        "token": MASK,
        "token_types": MASK,
    }


def test_allow_keys_override_the_exact_denylist() -> None:
    """An allowed name stays visible even when it is on the exact denylist."""
    assert Redactor(allow_keys=["session"]).redact_mapping({"session": "s1", "sessionid": "x"}) == {
        "session": "s1",
        "sessionid": MASK,
    }


def test_extra_keys_add_to_the_defaults() -> None:
    """extra_keys masks more names while the defaults still apply."""
    redactor = Redactor(extra_keys=["Employee-Number"])
    assert redactor.redact_mapping({"employee_number": 7, "password": "p", "name": "n"}) == {
        "employee_number": MASK,
        "password": MASK,
        "name": "n",
    }


def test_keys_replace_the_exact_list_but_not_the_substring_rules() -> None:
    """keys= replaces the exact names; the substring rules still apply."""
    redactor = Redactor(keys=["tenant_code"])
    data = {"tenant_code": "c", "cookie": "c", "db_password": "p"}
    assert redactor.redact_mapping(data) == {"tenant_code": MASK, "cookie": "c", "db_password": MASK}


@pytest.mark.parametrize("parameter", ["keys", "extra_keys", "allow_keys"])
def test_a_bare_string_is_refused_as_a_list_of_names(parameter: str) -> None:
    """Passing one string where a list of names is expected raises TypeError."""
    with pytest.raises(TypeError, match=parameter):
        Redactor(**{parameter: "password"})  # type: ignore[arg-type]


def test_custom_mask() -> None:
    """The mask option sets the replacement text."""
    assert Redactor(mask="***").redact_mapping({"pwd": "x"}) == {"pwd": "***"}


def test_denied_key_masks_the_whole_value_whatever_its_type(redactor: Redactor) -> None:
    """A denied key's value is masked whole: dict, list, number or None."""
    data = {"credentials": {"user": "u", "pass": "p"}, "tokens": ["a", "b"], "pin": 1234, "otp": None}
    assert redactor.redact_mapping(data) == {"credentials": MASK, "tokens": MASK, "pin": MASK, "otp": MASK}


def test_recursion_into_nested_dicts_and_lists_of_dicts(redactor: Redactor) -> None:
    """Denied keys are found inside nested dicts, lists of dicts and tuples of dicts."""
    data = {
        "spec": {"env": [{"name": "A", "secret": "s"}, {"name": "B", "value": 1}]},
        "nested": [[{"API-KEY": "k"}], "plain"],
        "pair": ({"password": "p"}, 2),
    }
    assert redactor.redact_mapping(data) == {
        "spec": {"env": [{"name": "A", "secret": MASK}, {"name": "B", "value": 1}]},
        "nested": [[{"API-KEY": MASK}], "plain"],
        "pair": ({"password": MASK}, 2),
    }


def test_input_is_not_mutated_and_output_is_new(redactor: Redactor) -> None:
    """redact_mapping leaves its input unchanged and shares no container with it."""
    inner = {"password": "p", "x": 1}
    items = [inner]
    data = {"items": items, "inner": inner}
    snapshot = copy.deepcopy(data)
    result = redactor.redact_mapping(data)
    assert data == snapshot
    assert result is not data
    assert result["items"] is not items
    assert result["inner"] is not inner


@pytest.mark.parametrize("empty", [None, {}])
def test_empty_input_gives_empty_dict(redactor: Redactor, empty: dict[str, Any] | None) -> None:
    """None or an empty mapping gives a new empty dict."""
    assert redactor.redact_mapping(empty) == {}


def test_nesting_deeper_than_the_limit_becomes_a_marker(redactor: Redactor) -> None:
    """A container below MAX_DEPTH levels is replaced by a marker, not walked or raised on."""
    deep: Any = {"password": "p"}
    for _ in range(MAX_DEPTH):
        deep = {"k": deep}
    result = redactor.redact_mapping(deep)
    for _ in range(MAX_DEPTH - 1):
        result = result["k"]
    assert result == {"k": DEPTH_MARKER}


def test_nesting_at_the_limit_is_redacted(redactor: Redactor) -> None:
    """A mapping exactly MAX_DEPTH levels down is still redacted normally."""
    deep: Any = {"password": "p"}
    for _ in range(MAX_DEPTH - 1):
        deep = {"k": deep}
    result = redactor.redact_mapping(deep)
    for _ in range(MAX_DEPTH - 1):
        result = result["k"]
    assert result == {"password": MASK}


def test_cycles_become_a_marker(redactor: Redactor) -> None:
    """A dict or list that contains itself is replaced by a marker at the repeat."""
    data: dict[str, Any] = {"name": "n"}
    data["self"] = data
    loop: list[Any] = [1]
    loop.append(loop)
    data["loop"] = loop
    assert redactor.redact_mapping(data) == {"name": "n", "self": CYCLE_MARKER, "loop": [1, CYCLE_MARKER]}


def test_shared_subtree_is_not_a_cycle(redactor: Redactor) -> None:
    """The same object reached twice without containing itself is redacted both times."""
    shared = {"token": "t", "n": 1}
    assert redactor.redact_mapping({"a": shared, "b": [shared]}) == {
        "a": {"token": MASK, "n": 1},
        "b": [{"token": MASK, "n": 1}],
    }


def test_other_values_are_kept_converted_or_masked(redactor: Redactor) -> None:
    """Plain values are kept, sets become sorted lists, objects without fields a marker."""
    data = {"o": object(), "s": {2, 1}, "b": b"x", "p": pathlib.PurePosixPath("/a"), "n": None}
    assert redactor.redact_mapping(data) == {
        "o": "[REDACTED: object]",
        "s": [1, 2],
        "b": b"x",
        "p": "/a",
        "n": None,
    }


# --- changes --------------------------------------------------------------------------


def test_redacted_field_still_listed_with_both_sides_masked(redactor: Redactor) -> None:
    """A changed password stays in fields while its before and after values are masked."""
    before, after, fields = redactor.redact_changes(
        {"password": "old", "name": "a"}, {"password": "new", "name": "b"}, ("name", "password")
    )
    assert before == {"password": MASK, "name": "a"}
    assert after == {"password": MASK, "name": "b"}
    assert fields == ("name", "password")


def test_paths_through_a_denied_key_are_cut_at_that_key(redactor: Redactor) -> None:
    """Key names below a denied key do not leak through fields; the denied key is listed once."""
    changes = diff({"tokens": {"ghp_AAAA": {"created": 1}}}, {"tokens": {"ghp_BBBB": {"created": 2}}})
    before, after, fields = redactor.redact_changes(changes.before, changes.after, changes.fields)
    assert fields == ("tokens",)
    assert before == {"tokens": MASK}
    assert after == {"tokens": MASK}
    assert "ghp_" not in repr((before, after, fields))


@pytest.mark.parametrize(
    ("field", "want"),
    [
        pytest.param("spec.replicas", "spec.replicas", id="ordinary"),
        pytest.param("password", "password", id="denied-leaf-kept"),
        pytest.param("user.password", "user.password", id="denied-leaf-under-ordinary-key"),
        pytest.param("credentials.user", "credentials", id="cut-at-denied-ancestor"),
        pytest.param("a\\.token.x", "a\\.token", id="escaped-dot-inside-denied-key"),
        pytest.param("meta\\.token", "meta\\.token", id="escaped-dot-leaf"),
        pytest.param("x\\.y.z", "x\\.y.z", id="escaped-dot-ordinary"),
        pytest.param("a\\\\.secret.b", "a\\\\.secret", id="escaped-backslash-then-dot"),
    ],
)
def test_field_paths(redactor: Redactor, field: str, want: str) -> None:
    """Field paths are cut only at a denied key that has keys below it, honouring escapes."""
    assert redactor.redact_changes({}, {}, [field])[2] == (want,)


def test_redact_changes_sorts_and_deduplicates_fields(redactor: Redactor) -> None:
    """Fields come back sorted, with the paths cut to one key listed once."""
    fields = ["z", "secret.b", "secret.a", "a"]
    assert redactor.redact_changes(None, None, fields) == ({}, {}, ("a", "secret", "z"))


def test_redact_changes_works_on_diff_output(redactor: Redactor) -> None:
    """A diff of a resource whose API key rotated keeps the field and masks both values."""
    changes = diff({"name": "svc", "config": {"api_key": "k1"}}, {"name": "svc", "config": {"api_key": "k2"}})
    before, after, fields = redactor.redact_changes(changes.before, changes.after, changes.fields)
    assert (before, after, fields) == (
        {"config": {"api_key": MASK}},
        {"config": {"api_key": MASK}},
        ("config.api_key",),
    )


# --- spellings the denylist must catch ------------------------------------------------

ISSUE_SPELLINGS = [
    "HTTP_AUTHORIZATION",
    "HTTP_COOKIE",
    "Proxy-Authorization",
    "proxy_authorization",
    "db_passwd",
    "user_pwd",
    "passphrase",
    "aws_credentials",
    "basic_auth",
    "x-auth",
    "jwt",
    "bearer",
]


@pytest.mark.parametrize("name", ISSUE_SPELLINGS)
def test_common_secret_spellings_are_masked(redactor: Redactor, name: str) -> None:
    """Environ-style, proxy, abbreviated and scheme names of credentials are masked."""
    assert redactor.redact_mapping({name: "S3CR3T", "other": "v"}) == {name: MASK, "other": "v"}


def test_a_dumped_wsgi_environ_keeps_no_credentials(redactor: Redactor) -> None:
    """The credential headers of a WSGI environ dumped into details are masked."""
    environ = {
        "HTTP_AUTHORIZATION": "Bearer abc",
        "HTTP_COOKIE": "session=abc",
        "HTTP_PROXY_AUTHORIZATION": "Basic dTpw",
        "HTTP_X_API_KEY": "k",
        "HTTP_ACCEPT": "*/*",
        "PATH_INFO": "/pods",
    }
    assert redactor.redact_mapping(environ) == {
        "HTTP_AUTHORIZATION": MASK,
        "HTTP_COOKIE": MASK,
        "HTTP_PROXY_AUTHORIZATION": MASK,
        "HTTP_X_API_KEY": MASK,
        "HTTP_ACCEPT": "*/*",
        "PATH_INFO": "/pods",
    }


def test_environ_style_credential_headers_are_dropped(redactor: Redactor) -> None:
    """redact_headers drops HTTP_AUTHORIZATION / HTTP_COOKIE spellings as it drops the plain names."""
    headers = {
        "HTTP_AUTHORIZATION": "Bearer t",
        "http-cookie": "c",
        "HTTP_PROXY_AUTHORIZATION": "x",
        "A": "b",
    }
    assert redactor.redact_headers(headers) == {"A": "b"}


@pytest.mark.parametrize(
    "value",
    [
        "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
        "basic dXNlcjpodW50ZXIy",
        'Digest username="ann", response="6629fae49393a05397450978507c4ef1"',
        "postgres://app:hunter2@db.internal:5432/main",
    ],
)
def test_credentials_in_values_under_innocent_keys_are_masked(redactor: Redactor, value: str) -> None:
    """An Authorization value or a URL with a password is masked wherever it sits (a header pair list)."""
    output = redactor.redact_mapping({"headers": [("X-Original", value)], "url": value})
    assert "hunter2" not in repr(output)
    assert "eyJ" not in repr(output)
    assert "dXNlcjpodW50ZXIy" not in repr(output)
    assert "6629fae4" not in repr(output)


@pytest.mark.parametrize("value", ["Basic information", "Bearer of bad news", "https://example.com/a:b@c"])
def test_ordinary_text_that_resembles_credentials_is_kept(redactor: Redactor, value: str) -> None:
    """Words after Basic / Bearer and URLs without a password stay as they are."""
    assert redactor.redact_mapping({"note": value}) == {"note": value}


# Base names as words; the exact-only ones (marked False) are masked under their whole name
# only, so no extra words are added to them.
SECRET_WORDS: list[tuple[tuple[str, ...], bool]] = [
    (("password",), True),
    (("passwd",), True),
    (("pwd",), True),
    (("pass",), True),
    (("passphrase",), True),
    (("secret",), True),
    (("client", "secret"), True),
    (("token",), True),
    (("access", "token"), True),
    (("api", "key"), True),
    (("private", "key"), True),
    (("credentials",), True),
    (("authorization",), True),
    (("proxy", "authorization"), True),
    (("auth",), True),
    (("basic", "auth"), True),
    (("jwt",), True),
    (("bearer",), True),
    (("cookie",), False),
    (("set", "cookie"), False),
    (("session", "id"), False),
    (("csrf",), False),
]
EXTRA_WORDS = st.sampled_from(["db", "user", "x", "aws", "my", "old", "new", "value", "2", "github"])


def _cased(word: str, style: str) -> str:
    return {"lower": word.lower(), "upper": word.upper(), "title": word.title()}[style]


@st.composite
def secret_spellings(draw: st.DrawFn) -> str:
    """A secret name spelled as people and frameworks do: any case, separator, HTTP_ prefix, extra words."""
    words, compound = draw(st.sampled_from(SECRET_WORDS))
    words = list(words)
    if compound:
        words = [*draw(st.lists(EXTRA_WORDS, max_size=2)), *words, *draw(st.lists(EXTRA_WORDS, max_size=2))]
    if draw(st.booleans()):
        words = ["http", *words]
    separator = draw(st.sampled_from(["_", "-", " ", ".", "camel"]))
    style = draw(st.sampled_from(["lower", "upper", "title"]))
    if separator == "camel":
        return words[0].lower() + "".join(word.title() for word in words[1:])
    return separator.join(_cased(word, style) for word in words)


@given(secret_spellings())
def test_generated_secret_spellings_are_masked(name: str) -> None:
    """Property: every generated spelling of a secret name has its value masked."""
    assert Redactor().redact_mapping({name: "S3CR3T"}) == {name: MASK}, name


# --- objects that are not dicts -------------------------------------------------------


@dataclasses.dataclass
class Credentials:
    user: str
    password: str


@dataclasses.dataclass(frozen=True)
class FrozenCredentials:
    user: str
    password: str


class Login(pydantic.BaseModel):
    user: str
    password: str
    api: pydantic.SecretStr


@attrs.define
class Token:
    owner: str
    token: str


class Plain:
    def __init__(self) -> None:
        self.user = "ann"
        self.password = "S3CR3T"


class Slotted:
    __slots__ = ("secret", "user")

    def __init__(self) -> None:
        self.user = "ann"
        self.secret = "S3CR3T"


class Opaque:
    """No fields to read, only a repr that shows the secret."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Opaque(password='S3CR3T')"


Pair = collections.namedtuple("Pair", ["user", "password"])


def _stored(value: object) -> str:
    """What a sink would store for ``value`` inside details, as JSON text."""
    return dumps(Redactor().redact_mapping({"value": value})).decode("utf-8")


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(Credentials("ann", "S3CR3T"), id="dataclass"),
        pytest.param(Login(user="ann", password="S3CR3T", api=pydantic.SecretStr("S3CR3T")), id="pydantic"),
        pytest.param(Token("ann", "S3CR3T"), id="attrs"),
        pytest.param(Plain(), id="object with __dict__"),
        pytest.param(Slotted(), id="object with __slots__"),
        pytest.param(Pair("ann", "S3CR3T"), id="namedtuple"),
        pytest.param([Credentials("ann", "S3CR3T")], id="in a list"),
        pytest.param(frozenset({FrozenCredentials("ann", "S3CR3T")}), id="in a set"),
    ],
)
def test_known_object_shapes_are_redacted_as_mappings(value: object) -> None:
    """Dataclasses, pydantic and attrs models, plain objects and namedtuples are redacted by field."""
    stored = _stored(value)
    assert "S3CR3T" not in stored
    assert "ann" in stored  # converted, not just masked whole


def test_an_object_that_cannot_be_read_is_masked_not_stored_as_repr() -> None:
    """An object without readable fields becomes a marker naming its type, never its repr."""
    assert Redactor().redact_mapping({"value": Opaque()}) == {"value": "[REDACTED: Opaque]"}


def test_objects_in_diff_values_are_redacted() -> None:
    """diff() of objects keeps them as values; redaction turns them into masked mappings."""
    changes = diff({"creds": Credentials("ann", "old-S3CR3T")}, {"creds": Credentials("ann", "S3CR3T")})
    before, after, fields = Redactor().redact_changes(changes.before, changes.after, changes.fields)
    assert fields == ("creds",)
    assert before == {"creds": {"user": "ann", "password": MASK}}
    assert after == {"creds": {"user": "ann", "password": MASK}}


def test_a_record_with_objects_stores_no_secret(audit_sink: Any) -> None:
    """Through record() and the processing stage, no stored byte holds a secret inside an object."""
    record(
        "update",
        details={"login": Login(user="ann", password="S3CR3T", api=pydantic.SecretStr("k")), "e": Plain()},
        changes=({"c": Credentials("ann", "S3CR3T-1")}, {"c": Credentials("ann", "S3CR3T-2")}),
    )
    (event,) = audit_sink.events
    assert "S3CR3T" not in dumps(event.to_document()).decode("utf-8")


def test_safe_values_pass_through_unchanged() -> None:
    """Dates, UUIDs, decimals, enums and numbers are kept as they are."""
    values = {
        "when": datetime.datetime(2026, 1, 2, tzinfo=datetime.timezone.utc),
        "day": datetime.date(2026, 1, 2),
        "id": uuid.UUID(int=7),
        "amount": decimal.Decimal("1.50"),
        "level": enum.Enum("Level", "LOW HIGH").HIGH,
        "n": 3,
        "x": 1.5,
        "raw": b"bytes",
    }
    assert Redactor().redact_mapping(values) == values


# --- headers --------------------------------------------------------------------------


def test_credential_headers_are_dropped_and_denied_names_masked(redactor: Redactor) -> None:
    """Authorization, Proxy-Authorization, Cookie and Set-Cookie vanish; X-API-Key is masked."""
    headers = {
        "authorization": "Bearer t",
        "Proxy-Authorization": "Basic x",
        "COOKIE": "s=1",
        "Set-Cookie": "s=2",
        "X-API-Key": "k",
        "X-Auth-Token": "t",
        "User-Agent": "curl/8",
        "X-Request-Id": "r1",
    }
    assert redactor.redact_headers(headers) == {
        "X-API-Key": MASK,
        "X-Auth-Token": MASK,
        "User-Agent": "curl/8",
        "X-Request-Id": "r1",
    }


def test_allow_keys_do_not_bring_back_dropped_headers() -> None:
    """allow_keys can unmask a header but never captures credentials headers."""
    redactor = Redactor(allow_keys=["authorization", "cookie", "x-csrf-token"])
    headers = {"Authorization": "Bearer t", "Cookie": "c", "X-CSRF-Token": "abc"}
    assert redactor.redact_headers(headers) == {"X-CSRF-Token": "abc"}


@pytest.mark.parametrize("empty", [None, {}])
def test_empty_headers(redactor: Redactor, empty: dict[str, str] | None) -> None:
    """No headers give an empty dict."""
    assert redactor.redact_headers(empty) == {}


# --- IPs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "want"),
    [
        pytest.param("203.0.113.77", "203.0.113.0", id="ipv4"),
        pytest.param(" 10.1.2.3 ", "10.1.2.0", id="ipv4-whitespace"),
        pytest.param("2001:db8:abcd:12:34::1", "2001:db8:abcd::", id="ipv6"),
        pytest.param("2001:DB8:ABCD:FFFF:FFFF:FFFF:FFFF:FFFF", "2001:db8:abcd::", id="ipv6-upper"),
        pytest.param("fe80::1%eth0", "fe80::", id="ipv6-scoped"),
        pytest.param("::ffff:198.51.100.9", "198.51.100.0", id="ipv4-mapped"),
        pytest.param("not-an-ip", None, id="invalid"),
        pytest.param("198.51.100.9:443", "198.51.100.0", id="with-port"),
        pytest.param(None, None, id="none"),
    ],
)
def test_ip_truncation(value: str | None, want: str | None) -> None:
    """With truncate_ips, IPv4 keeps its /24 and IPv6 its /48; a non-IP gives None."""
    assert Redactor(truncate_ips=True).ip(value) == want


@given(st.ip_addresses())
def test_truncated_ip_is_the_network_of_the_address(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    """The truncated value is the address's /24 or /48 network address."""
    truncated = Redactor(truncate_ips=True).ip(str(address))
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    assert truncated == str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


def test_ip_unchanged_without_truncation(redactor: Redactor) -> None:
    """Without truncate_ips the value is returned as given."""
    assert redactor.ip("203.0.113.77") == "203.0.113.77"
    assert redactor.ip("garbage") == "garbage"
    assert redactor.truncate_ips is False


# --- emails ---------------------------------------------------------------------------

PSEUDONYM = re.compile(r"u-[0-9a-f]{24}@pseudonym\.invalid")


def test_email_pseudonym_is_the_keyed_hmac() -> None:
    """The pseudonym is u-<24 hex of HMAC-SHA256(key, trimmed lowercased email)>@pseudonym.invalid."""
    digest = hmac.new(KEY, b"ana@example.com", hashlib.sha256).hexdigest()[:24]
    assert Redactor(email_pseudonym_key=KEY).email(" Ana@Example.COM ") == f"u-{digest}@pseudonym.invalid"


def test_email_pseudonym_is_stable_across_instances() -> None:
    """Two Redactors with the same key give the same pseudonym, so dashboards can group by it."""
    first = Redactor(email_pseudonym_key=KEY).email("ana@example.com")
    assert first is not None
    assert PSEUDONYM.fullmatch(first)
    assert Redactor(email_pseudonym_key=bytes(KEY)).email("ANA@example.com") == first


def test_email_pseudonym_depends_on_key_and_email() -> None:
    """Different keys or different emails give different pseudonyms, without the address in them."""
    one = Redactor(email_pseudonym_key=KEY)
    other = Redactor(email_pseudonym_key=KEY[::-1])
    pseudonyms = {one.email("ana@example.com"), other.email("ana@example.com"), one.email("bo@example.com")}
    assert len(pseudonyms) == 3
    assert not any("ana" in p or "example" in p for p in pseudonyms if p)


def test_email_pseudonym_is_idempotent_and_keeps_blanks() -> None:
    """A pseudonym, a blank string and None come back unchanged."""
    redactor = Redactor(email_pseudonym_key=KEY)
    pseudonym = redactor.email("ana@example.com")
    assert redactor.email(pseudonym) == pseudonym
    assert redactor.email("  ") == "  "
    assert redactor.email(None) is None


def test_email_survives_undecodable_text() -> None:
    """An email holding a lone surrogate (from bad UTF-8) is pseudonymised, not raised on."""
    result = Redactor(email_pseudonym_key=KEY).email("ana\udcff@example.com")
    assert result is not None
    assert PSEUDONYM.fullmatch(result)


def test_email_unchanged_without_key(redactor: Redactor) -> None:
    """Without email_pseudonym_key the email is returned as given."""
    assert redactor.email("Ana@Example.com") == "Ana@Example.com"
    assert redactor.email_pseudonym_key is None


@pytest.mark.parametrize("key", [b"", b"short"])
def test_short_pseudonym_key_is_refused(key: bytes) -> None:
    """A pseudonym key under 16 bytes raises ValueError, since it could be guessed."""
    with pytest.raises(ValueError, match="at least 16"):
        Redactor(email_pseudonym_key=key)


# --- properties -----------------------------------------------------------------------

# Secrets contain "!", which ordinary keys and text never do: finding one in repr() is a leak.
SAFE_TEXT = st.text(alphabet=st.characters(codec="ascii", exclude_characters="!\\'\""), max_size=6)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), SAFE_TEXT)
VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=3)
        | st.tuples(children, children)
        | st.dictionaries(SAFE_TEXT, children, max_size=3)
    ),
    max_leaves=15,
)
DOCUMENTS = st.dictionaries(SAFE_TEXT, VALUES, max_size=4)
SECRET_NAMES = st.sampled_from(
    [
        "password",
        "PassWord",
        "db_password",
        "X-API-Key",
        "apiKey",
        "Set-Cookie",
        "github_token",
        "client secret",
        "SSH_PRIVATE_KEY",
        "sessionid",
        "authorization",
        "cvv",
        "credentials",
    ]
)


def containers(value: Any) -> list[dict[str, Any]]:
    """Every dict inside a value, itself included, walking lists and tuples too."""
    found: list[dict[str, Any]] = []
    if isinstance(value, dict):
        found.append(value)
        children: Any = value.values()
    elif isinstance(value, (list, tuple)):
        children = value
    else:
        return found
    for child in children:
        found.extend(containers(child))
    return found


@st.composite
def documents_with_secrets(draw: st.DrawFn) -> tuple[dict[str, Any], list[str]]:
    """A document with secrets planted under denied keys in randomly chosen nested dicts."""
    document = draw(DOCUMENTS)
    secrets = []
    for number in range(draw(st.integers(1, 4))):
        secret = f"!secret{number}!"
        target = draw(st.sampled_from(containers(document)))
        wrapped = draw(st.sampled_from([secret, [secret], {"inner": secret}, [{"x": (secret,)}]]))
        target[draw(SECRET_NAMES)] = wrapped
        secrets.append(secret)
    return document, secrets


@given(documents_with_secrets())
def test_no_secret_survives_redaction(case: tuple[dict[str, Any], list[str]]) -> None:
    """No value planted under a denied key, at any depth, appears in repr() of the output."""
    document, secrets = case
    planted = repr(document)
    assert secrets[-1] in planted  # the last plant is never overwritten: the check below has teeth
    output = repr(Redactor().redact_mapping(document))
    assert not [secret for secret in secrets if secret in output]


@given(documents_with_secrets())
def test_redaction_is_idempotent(case: tuple[dict[str, Any], list[str]]) -> None:
    """Redacting an already redacted document changes nothing."""
    redactor = Redactor()
    once = redactor.redact_mapping(case[0])
    assert redactor.redact_mapping(once) == once


@given(documents_with_secrets())
def test_redaction_never_mutates_its_input(case: tuple[dict[str, Any], list[str]]) -> None:
    """The input document is unchanged after redaction."""
    document = case[0]
    snapshot = copy.deepcopy(document)
    Redactor().redact_mapping(document)
    assert document == snapshot


@given(DOCUMENTS)
def test_documents_without_denied_keys_are_unchanged(document: dict[str, Any]) -> None:
    """A document none of whose keys (or pair names) is denied comes back equal."""
    redactor = Redactor()
    assume(not any(redactor.is_denied(key) for found in containers(document) for key in found))
    assume(not any(redactor.is_denied(name) for name in _pair_names(document)))
    assert redactor.redact_mapping(document) == document


def _pair_names(value: Any) -> list[str]:
    """The names of (name, value) pairs anywhere in a value, which redaction judges like keys."""
    names: list[str] = []
    children: Any = (
        value.values() if isinstance(value, dict) else value if isinstance(value, list | tuple) else ()
    )
    for child in children:
        if type(child) in (tuple, list) and len(child) == 2 and isinstance(child[0], str):
            names.append(child[0])
        names.extend(_pair_names(child))
    return names


def test_name_value_pairs_are_judged_by_their_name(redactor: Redactor) -> None:
    """A header list of (name, value) pairs masks the values of denied names, like a mapping."""
    headers = [("Cookie", "sid=s3cr3t"), ("Accept", "*/*"), ["X-Api-Key", "k"], ("n", 1, 2)]
    assert redactor.redact_mapping({"headers": headers}) == {
        "headers": [("Cookie", MASK), ("Accept", "*/*"), ["X-Api-Key", MASK], ("n", 1, 2)]
    }


_CREDENTIAL_PIECES = st.sampled_from(
    ("Bearer ", "basic ", "Digest ", "NTLM ", " ", "\t", "://", "@", ":", "/", "dXNlcjpwdw==", "=", "x" * 17)
)


@given(st.lists(_CREDENTIAL_PIECES, max_size=8).map("".join))
def test_text_without_a_scheme_space_or_a_url_skips_the_patterns_and_loses_nothing(text):
    """The cheap test in front of the credential patterns never lets a credential through."""
    expected = "[REDACTED]" if is_authorization_value(text) else mask_url_password(text, "[REDACTED]")
    assert Redactor().redact_mapping({"note": text}) == {"note": expected}
