"""Client IP resolution: forged headers, header syntax, trust configuration, privacy truncation."""

from __future__ import annotations

import dataclasses
import ipaddress
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit_middleware.capture.clientip import (
    MAX_CHAIN,
    MAX_HEADER_CHARS,
    MAX_HOPS,
    ProxyTrust,
    ResolvedIP,
    resolve_client_ip,
    truncate_ip,
)

PEER = "10.0.0.1"  # the nearest proxy, or the client itself when nothing is trusted
CLIENT = "203.0.113.9"
NO_TRUST = ProxyTrust()
HOPS1 = ProxyTrust(hops=1)
HOPS2 = ProxyTrust(hops=2)
CIDRS = ProxyTrust.from_config(["10.0.0.0/8", "fd00::/8"])
FWD1 = ProxyTrust(hops=1, header="forwarded")
FWD2 = ProxyTrust(hops=2, header="forwarded")
FWD_CIDRS = ProxyTrust.from_config(["10.0.0.0/8", "fd00::/8"], header="forwarded")

PADDING_64K = "6.6.6.6, " * (64 * 1024 // 9)


def _cut_fragment_header() -> str:
    """A header whose 8 KiB window starts inside "110.0.0.1", leaving "10.0.0.1" (trusted)."""
    tail = "10.0.0.3" + ", 10.0.0.2" * 3
    pad = MAX_HEADER_CHARS + 1 - len("110.0.0.1,") - len(tail)
    header = "110.0.0.1," + " " * pad + tail
    assert len(header) == MAX_HEADER_CHARS + 1
    assert header[-MAX_HEADER_CHARS:].startswith("10.0.0.1,")
    return header


CASES = [
    # No trust: the peer, whatever the headers say.
    pytest.param(NO_TRUST, PEER, None, None, PEER, "peer", id="no-trust-peer"),
    pytest.param(NO_TRUST, CLIENT, "6.6.6.6", None, CLIENT, "peer", id="no-trust-spoofed-xff"),
    pytest.param(NO_TRUST, CLIENT, None, "for=6.6.6.6", CLIENT, "peer", id="no-trust-spoofed-forwarded"),
    pytest.param(ProxyTrust.from_config(0), CLIENT, "6.6.6.6", None, CLIENT, "peer", id="hops0-is-no-trust"),
    # Hop count, X-Forwarded-For.
    pytest.param(HOPS1, PEER, CLIENT, None, CLIENT, "x-forwarded-for", id="hops1-single"),
    pytest.param(
        HOPS1, PEER, f"6.6.6.6, 7.7.7.7, {CLIENT}", None, CLIENT, "x-forwarded-for", id="hops1-prepended"
    ),
    pytest.param(HOPS2, PEER, f"6.6.6.6, {CLIENT}, 10.0.0.2", None, CLIENT, "x-forwarded-for", id="hops2"),
    pytest.param(HOPS2, PEER, CLIENT, None, PEER, "peer", id="hops2-too-few-values"),
    pytest.param(HOPS1, PEER, None, None, PEER, "peer", id="hops1-no-header"),
    pytest.param(HOPS1, PEER, "", None, PEER, "peer", id="hops1-empty-header"),
    pytest.param(HOPS1, PEER, " , ,\t,", None, PEER, "peer", id="hops1-only-empty-elements"),
    pytest.param(HOPS1, PEER, f"6.6.6.6,,{CLIENT},, ", None, CLIENT, "x-forwarded-for", id="empty-elements"),
    pytest.param(HOPS1, PEER, f" \t{CLIENT}\t ", None, CLIENT, "x-forwarded-for", id="whitespace"),
    pytest.param(HOPS1, PEER, "6.6.6.6", "for=7.7.7.7", "6.6.6.6", "x-forwarded-for", id="xff-by-default"),
    pytest.param(HOPS1, PEER, None, f"for={CLIENT}", PEER, "peer", id="forwarded-ignored-by-default"),
    # Address forms.
    pytest.param(HOPS1, PEER, f"{CLIENT}:8080", None, CLIENT, "x-forwarded-for", id="ipv4-port"),
    pytest.param(HOPS1, PEER, "2001:DB8:0::1", None, "2001:db8::1", "x-forwarded-for", id="ipv6-bare"),
    pytest.param(HOPS1, PEER, "[2001:db8::1]", None, "2001:db8::1", "x-forwarded-for", id="ipv6-brackets"),
    pytest.param(HOPS1, PEER, "[2001:db8::1]:4711", None, "2001:db8::1", "x-forwarded-for", id="ipv6-port"),
    pytest.param(HOPS1, PEER, "fe80::1%eth0", None, "fe80::1", "x-forwarded-for", id="ipv6-zone-dropped"),
    pytest.param(HOPS1, PEER, "[fe80::1%eth0]:80", None, "fe80::1", "x-forwarded-for", id="ipv6-zone-port"),
    pytest.param(HOPS1, PEER, f"::ffff:{CLIENT}", None, CLIENT, "x-forwarded-for", id="ipv4-mapped"),
    pytest.param(HOPS1, PEER, "[::ffff:cb00:7109]:1", None, CLIENT, "x-forwarded-for", id="ipv4-mapped-hex"),
    pytest.param(HOPS1, PEER, f"[{CLIENT}]", None, PEER, "peer", id="ipv4-in-brackets-rejected"),
    pytest.param(HOPS1, PEER, "203.000.113.9", None, PEER, "peer", id="leading-zeros-rejected"),
    pytest.param(HOPS1, PEER, f"{CLIENT}:http", None, PEER, "peer", id="bad-port-rejected"),
    pytest.param(HOPS1, PEER, f"{CLIENT}:65536", None, PEER, "peer", id="port-out-of-range"),
    pytest.param(HOPS1, PEER, "[2001:db8::1", None, PEER, "peer", id="unclosed-bracket"),
    pytest.param(HOPS1, PEER, "fe80::1%", None, PEER, "peer", id="empty-zone-rejected"),
    pytest.param(HOPS1, PEER, "fe80::1%" + "z" * 200, None, PEER, "peer", id="overlong-node-rejected"),
    pytest.param(HOPS1, PEER, "\uff12\uff10\uff13.0.113.9", None, PEER, "peer", id="fullwidth-digits"),
    pytest.param(HOPS1, PEER, "not-an-ip", None, PEER, "peer", id="garbage-is-never-the-client"),
    # Garbage on the walk: never returned, nothing left of it used.
    pytest.param(
        HOPS2,
        PEER,
        "6.6.6.6, garbage, 10.0.0.2",
        None,
        "10.0.0.2",
        "x-forwarded-for",
        id="hops2-garbage-at-client",
    ),
    pytest.param(
        HOPS2, PEER, f"6.6.6.6, {CLIENT}, garbage", None, CLIENT, "x-forwarded-for", id="hops2-garbage-proxy"
    ),
    pytest.param(HOPS2, PEER, "6.6.6.6, x, y", None, PEER, "peer", id="hops2-all-garbage"),
    # Size and encoding.
    pytest.param(HOPS1, PEER, PADDING_64K + CLIENT, None, CLIENT, "x-forwarded-for", id="64k-many-elements"),
    pytest.param(
        HOPS1, PEER, "6" * 65536 + f", {CLIENT}", None, CLIENT, "x-forwarded-for", id="64k-one-element"
    ),
    pytest.param(HOPS1, PEER, "6.6.6.6" * 10000, None, PEER, "peer", id="64k-no-comma"),
    pytest.param(
        CIDRS, PEER, _cut_fragment_header(), None, "10.0.0.3", "x-forwarded-for", id="cut-fragment-dropped"
    ),
    pytest.param(
        HOPS1, PEER, f"\xff\xfe\x00, {CLIENT}", None, CLIENT, "x-forwarded-for", id="invalid-utf8-before"
    ),
    pytest.param(HOPS1, PEER, f"{CLIENT}\xff", None, PEER, "peer", id="invalid-utf8-in-entry"),
    pytest.param(HOPS1, PEER, f"{CLIENT}\x00", None, PEER, "peer", id="nul-in-entry"),
    # CIDR trust.
    pytest.param(CIDRS, "198.51.100.1", "6.6.6.6", None, "198.51.100.1", "peer", id="cidr-untrusted-peer"),
    pytest.param(CIDRS, PEER, CLIENT, None, CLIENT, "x-forwarded-for", id="cidr-trusted-peer"),
    pytest.param(
        CIDRS, PEER, f"6.6.6.6, {CLIENT}, 10.0.0.5", None, CLIENT, "x-forwarded-for", id="cidr-prepended"
    ),
    pytest.param(
        CIDRS, PEER, "10.0.0.7, 10.0.0.5", None, "10.0.0.7", "x-forwarded-for", id="cidr-all-trusted"
    ),
    pytest.param(
        CIDRS, PEER, f"{CLIENT}, garbage, 10.0.0.5", None, "10.0.0.5", "x-forwarded-for", id="cidr-garbage"
    ),
    pytest.param(CIDRS, PEER, f"{CLIENT}, unknown", None, PEER, "peer", id="cidr-garbage-next-to-peer"),
    pytest.param(CIDRS, PEER, None, None, PEER, "peer", id="cidr-no-header"),
    pytest.param(CIDRS, "fd00::1", "2001:db8::5", None, "2001:db8::5", "x-forwarded-for", id="cidr-ipv6"),
    pytest.param(CIDRS, "::ffff:10.0.0.1", CLIENT, None, CLIENT, "x-forwarded-for", id="cidr-mapped-peer"),
    pytest.param(CIDRS, "::ffff:10.0.0.1", None, None, PEER, "peer", id="mapped-peer-normalized"),
    pytest.param(
        CIDRS, PEER, f"{CLIENT}, ::ffff:10.0.0.9", None, CLIENT, "x-forwarded-for", id="cidr-mapped-hop"
    ),
    # Forwarded (RFC 7239).
    pytest.param(FWD1, PEER, None, f"for={CLIENT}", CLIENT, "forwarded", id="fwd"),
    pytest.param(FWD1, PEER, "6.6.6.6", None, PEER, "peer", id="fwd-ignores-xff"),
    pytest.param(
        FWD1, PEER, None, 'for="[2001:db8::1]:4711"', "2001:db8::1", "forwarded", id="fwd-quoted-ipv6"
    ),
    pytest.param(FWD1, PEER, None, f'for="{CLIENT}:80"', CLIENT, "forwarded", id="fwd-quoted-ipv4-port"),
    pytest.param(
        FWD1, PEER, None, 'for="[2001:db8::1]:_p1"', "2001:db8::1", "forwarded", id="fwd-obfuscated-port"
    ),
    pytest.param(
        FWD1, PEER, None, f"Proto=https;FOR={CLIENT};By=10.0.0.1", CLIENT, "forwarded", id="fwd-case"
    ),
    pytest.param(FWD1, PEER, None, f"for=6.6.6.6, for={CLIENT}", CLIENT, "forwarded", id="fwd-prepended"),
    pytest.param(FWD1, PEER, None, f"for=6.6.6.6,For={CLIENT}", CLIENT, "forwarded", id="fwd-joined-lines"),
    pytest.param(FWD1, PEER, None, "for=_hidden", PEER, "peer", id="fwd-obfuscated-node"),
    pytest.param(FWD1, PEER, None, 'for="unknown"', PEER, "peer", id="fwd-unknown"),
    pytest.param(FWD2, PEER, None, f"for={CLIENT}, for=_hidden", CLIENT, "forwarded", id="fwd-hidden-proxy"),
    pytest.param(FWD2, PEER, None, "for=_x, for=10.0.0.2", "10.0.0.2", "forwarded", id="fwd-hidden-client"),
    pytest.param(FWD1, PEER, None, "proto=https", PEER, "peer", id="fwd-no-for"),
    pytest.param(FWD1, PEER, None, f"for=6.6.6.6;for={CLIENT}", PEER, "peer", id="fwd-duplicate-for"),
    pytest.param(FWD1, PEER, None, f"by={CLIENT}", PEER, "peer", id="fwd-by-is-not-for"),
    pytest.param(FWD1, PEER, None, 'for="203.0.113.99', PEER, "peer", id="fwd-unterminated-quote"),
    pytest.param(
        FWD1, PEER, None, f'for="6.6.6.6;x=", for={CLIENT}', CLIENT, "forwarded", id="fwd-quote-swallow"
    ),
    pytest.param(
        FWD1, PEER, None, 'for=6.6.6.6;x=", for="[2001:db8::1]"', "2001:db8::1", "forwarded", id="fwd-quote-2"
    ),
    pytest.param(FWD_CIDRS, PEER, None, f"for={CLIENT}, for=10.0.0.4", CLIENT, "forwarded", id="fwd-cidr"),
    pytest.param(
        FWD_CIDRS, "198.51.100.1", None, "for=6.6.6.6", "198.51.100.1", "peer", id="fwd-cidr-untrusted"
    ),
    # Peers that are no address.
    pytest.param(NO_TRUST, None, None, None, None, "peer", id="no-peer"),
    pytest.param(NO_TRUST, "testclient", None, None, None, "peer", id="peer-name"),
    pytest.param(CIDRS, None, CLIENT, None, None, "peer", id="cidr-no-peer"),
    pytest.param(HOPS1, None, "garbage", None, None, "peer", id="hops-garbage-no-peer"),
]


@pytest.mark.parametrize(("trust", "peer", "xff", "forwarded", "ip", "source"), CASES)
def test_resolve(trust, peer, xff, forwarded, ip, source):
    """The client IP follows the trust rules for each crafted request (``source`` documents why)."""
    result = resolve_client_ip(peer, xff, forwarded, trust)
    assert result.ip == ip, source


def test_chain_is_reported_without_trust():
    """Without trust the forwarded chain is still reported, stripped, empties left out."""
    result = resolve_client_ip(PEER, " 6.6.6.6 ,, [::1]:80 ,", None, NO_TRUST)
    assert result == ResolvedIP(PEER, ("6.6.6.6", "[::1]:80"))


def test_chain_of_forwarded_keeps_raw_elements():
    """With the Forwarded header configured, chain holds its raw elements."""
    header = 'for="[2001:db8::1]:4711";proto=https, for=unknown'
    result = resolve_client_ip(PEER, "6.6.6.6", header, FWD1)
    assert result.chain == ('for="[2001:db8::1]:4711";proto=https', "for=unknown")


def test_chain_is_capped_to_the_rightmost():
    """A long chain keeps only the rightmost MAX_CHAIN elements."""
    header = ", ".join(f"10.0.1.{i}" for i in range(100))
    result = resolve_client_ip(PEER, header, None, HOPS1)
    assert len(result.chain) == MAX_CHAIN
    assert result.chain[-1] == "10.0.1.99"
    assert result.chain[0] == f"10.0.1.{100 - MAX_CHAIN}"


def test_resolved_ip_is_frozen():
    """A resolved IP cannot be changed after the fact."""
    result = resolve_client_ip(PEER, None, None, NO_TRUST)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.ip = "6.6.6.6"  # type: ignore[misc]


# --- ProxyTrust configuration -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, ProxyTrust(), id="none"),
        pytest.param(0, ProxyTrust(), id="zero"),
        pytest.param(2, ProxyTrust(hops=2), id="hops"),
        pytest.param([], ProxyTrust(), id="empty-list"),
        pytest.param(
            ["10.0.0.0/8", " fd00::/8 "],
            ProxyTrust(cidrs=(ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))),
            id="cidr-list",
        ),
        pytest.param(
            "10.0.0.0/8, 192.168.1.5,",
            ProxyTrust(cidrs=(ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.168.1.5/32"))),
            id="comma-separated-string",
        ),
        pytest.param(
            (ipaddress.ip_network("172.16.0.0/12"),),
            ProxyTrust(cidrs=(ipaddress.ip_network("172.16.0.0/12"),)),
            id="network-objects",
        ),
    ],
)
def test_from_config(value, expected):
    """from_config turns None, a hop count or CIDRs into the matching trust."""
    assert ProxyTrust.from_config(value) == expected


def test_from_config_header():
    """from_config passes the header choice through."""
    assert ProxyTrust.from_config(1, header="forwarded").header == "forwarded"


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        pytest.param(-1, ValueError, "hops must be >= 0, got -1", id="negative-hops"),
        pytest.param(MAX_HOPS + 1, ValueError, "between 0 and", id="too-many-hops"),
        pytest.param(
            ["10.0.0.0/33"], ValueError, "invalid trusted proxy CIDR '10.0.0.0/33'", id="bad-prefix"
        ),
        pytest.param(["10.0.0.1/8"], ValueError, "host bits set", id="host-bits"),
        pytest.param(["proxy.local"], ValueError, "invalid trusted proxy CIDR 'proxy.local'", id="hostname"),
        pytest.param("10.0.0.0/8, nope", ValueError, "'nope'", id="bad-in-string"),
        pytest.param([""], ValueError, "invalid trusted proxy CIDR ''", id="empty-item"),
        pytest.param(["0.0.0.0/0"], ValueError, "trusts every address", id="trust-all-v4"),
        pytest.param(["::/0"], ValueError, "trusts every address", id="trust-all-v6"),
        pytest.param(True, TypeError, "bool", id="bool"),
        pytest.param(1.5, TypeError, "got float", id="float"),
        pytest.param([10], TypeError, "must be a string, got int", id="int-item"),
    ],
)
def test_from_config_rejects(value, error, message):
    """Bad trust settings fail at start-up with a message naming the problem."""
    with pytest.raises(error, match=re.escape(message)):
        ProxyTrust.from_config(value)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        pytest.param(
            {"hops": 1, "cidrs": (ipaddress.ip_network("10.0.0.0/8"),)}, ValueError, "not both", id="both"
        ),
        pytest.param({"cidrs": ("10.0.0.0/8",)}, TypeError, "from_config", id="string-cidrs"),
        pytest.param({"hops": "1"}, TypeError, "must be an int", id="string-hops"),
        pytest.param({"header": "x-real-ip"}, ValueError, "x-real-ip", id="unknown-header"),
    ],
)
def test_proxy_trust_validates(kwargs, error, message):
    """Direct construction is validated too, so a mistake fails once and not per request."""
    with pytest.raises(error, match=re.escape(message)):
        ProxyTrust(**kwargs)


# --- truncate_ip -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        pytest.param("203.0.113.9", "203.0.113.0", id="ipv4"),
        pytest.param("203.0.113.0", "203.0.113.0", id="ipv4-already"),
        pytest.param("2001:db8:abcd:1234::1", "2001:db8:abcd::", id="ipv6"),
        pytest.param("2001:DB8:ABCD:FFFF:FFFF::", "2001:db8:abcd::", id="ipv6-upper"),
        pytest.param("::ffff:203.0.113.9", "203.0.113.0", id="mapped"),
        pytest.param("fe80::1:2:3:4%eth0", "fe80::", id="zone"),
    ],
)
def test_truncate_ip(ip, expected):
    """IPv4 is cut to its /24 and IPv6 to its /48."""
    assert truncate_ip(ip) == expected


@pytest.mark.parametrize("ip", ["", "unknown", "203.0.113", "1.2.3.4.5", "x" * 10_000])
def test_truncate_ip_rejects_non_addresses(ip):
    """A value that is no address raises rather than pass through unblurred."""
    with pytest.raises(ValueError, match="not an IP address"):
        truncate_ip(ip)


@given(st.ip_addresses())
def test_truncate_ip_stays_in_network(address):
    """The truncated address lies in the original's /24 or /48 and truncating twice changes nothing."""
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    truncated = truncate_ip(str(address))
    assert ipaddress.ip_address(truncated) == ipaddress.ip_network((address, prefix), strict=False)[0]
    assert truncate_ip(truncated) == truncated


# --- Properties --------------------------------------------------------------------------

_ipv4 = st.ip_addresses(v=4).map(str)
_ipv6 = st.ip_addresses(v=6).map(str)
_port = st.integers(0, 65535).map(str)
_junk = st.text(st.characters(exclude_characters=","), max_size=20).filter(lambda s: s.strip(" \t"))
# Entries trusted proxies (or clients) may write: every accepted form, plus non-addresses.
_node = st.one_of(
    _ipv4,
    st.tuples(_ipv4, _port).map(":".join),
    _ipv6,
    _ipv6.map("[{}]".format),
    st.tuples(_ipv6, _port).map(lambda t: f"[{t[0]}]:{t[1]}"),
    st.sampled_from(["unknown", "_hidden", "fe80::1%eth0"]),
    _junk,
)
_xff_element = _node
_forwarded_element = st.tuples(
    _node, st.booleans(), st.sampled_from(["", ";proto=https", ";by=10.9.9.9"])
).map(lambda t: (f'for="{t[0]}"' if t[1] else f"for={t[0]}") + t[2])
_peer = st.one_of(st.none(), _ipv4, _ipv6, st.just("testclient"))
_any_trust = st.one_of(
    st.just(NO_TRUST),
    st.builds(ProxyTrust, hops=st.integers(1, 4), header=st.sampled_from(["x-forwarded-for", "forwarded"])),
    st.just(CIDRS),
    st.just(FWD_CIDRS),
)


def _addresses_in(text: str) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Every address written literally in text (an oracle independent of the module's parser)."""
    found: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    for token in re.findall(r"[0-9A-Fa-f:.]+", text):
        for candidate in (token, token.rsplit(":", 1)[0]):
            try:
                address = ipaddress.ip_address(candidate)
            except ValueError:
                continue
            found.add(address)
            if address.version == 6 and address.ipv4_mapped is not None:
                found.add(address.ipv4_mapped)
    return found


def _canonical(text: str | None) -> str | None:
    """How the module must report an address the test wrote."""
    if text is None or text == "testclient":
        return None
    address = ipaddress.ip_address(text)
    if address.version == 6 and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _assert_canonical(ip: str | None) -> None:
    """A reported address is in canonical text form."""
    if ip is not None:
        address = ipaddress.ip_address(ip)
        assert ip == str(address)
        assert address.version == 4 or address.ipv4_mapped is None


@given(
    peer=_peer,
    xff=st.one_of(st.none(), st.text(), st.lists(_xff_element).map(", ".join)),
    forwarded=st.one_of(st.none(), st.text(), st.lists(_forwarded_element).map(", ".join)),
    trust=_any_trust,
)
def test_resolve_never_raises_and_stays_in_trusted_positions(peer, xff, forwarded, trust):
    """For any headers the result is None, the peer, or an address within reach of the trust."""
    result = resolve_client_ip(peer, xff, forwarded, trust)
    _assert_canonical(result.ip)
    if result.ip == _canonical(peer):
        return
    assert trust != NO_TRUST
    allowed = result.chain[-trust.hops :] if trust.hops else result.chain
    assert any(ipaddress.ip_address(result.ip) in _addresses_in(element) for element in allowed)


@given(
    peer=_peer,
    xff=st.text(st.characters(max_codepoint=255)),
    forwarded=st.text(st.characters(max_codepoint=255)),
)
def test_no_trust_always_records_the_peer(peer, xff, forwarded):
    """Without trust the recorded IP is the peer's, whatever latin-1 headers arrive."""
    result = resolve_client_ip(peer, xff, forwarded, NO_TRUST)
    assert result.ip == _canonical(peer)


@given(
    prefix=st.text(),
    suffix=st.lists(_xff_element, min_size=1, max_size=4),
    hops=st.integers(1, 4),
    peer=_peer,
)
def test_hops_prefix_cannot_change_result_xff(prefix, suffix, hops, peer):
    """With hops=N, anything a client puts left of the proxies' entries leaves the result unchanged."""
    suffix = suffix[-hops:]
    trust = ProxyTrust(hops=hops)
    honest = resolve_client_ip(peer, ", ".join(suffix), None, trust)
    forged = resolve_client_ip(peer, f"{prefix}, {', '.join(suffix)}", None, trust)
    if len(suffix) == hops:
        assert forged.ip == honest.ip
    else:  # fewer proxies than configured hops: the client's entry may count; only the peer is safe
        assert honest.ip == _canonical(peer)


@given(
    prefix=st.text(),
    suffix=st.lists(_forwarded_element, min_size=1, max_size=4),
    hops=st.integers(1, 4),
    peer=_peer,
)
def test_hops_prefix_cannot_change_result_forwarded(prefix, suffix, hops, peer):
    """With hops=N over Forwarded, a client's prefix (even with open quotes) leaves the result unchanged."""
    suffix = suffix[-hops:]
    trust = ProxyTrust(hops=hops, header="forwarded")
    honest = resolve_client_ip(peer, None, ", ".join(suffix), trust)
    forged = resolve_client_ip(peer, None, f"{prefix}, {', '.join(suffix)}", trust)
    if len(suffix) == hops:
        assert forged.ip == honest.ip
    else:
        assert honest.ip == _canonical(peer)


@given(prefix=st.text(), client=_ipv4 | _ipv6, proxies=st.lists(_ipv4, max_size=3))
def test_hops_record_the_address_the_outermost_proxy_saw(prefix, client, proxies):
    """With hops=N and N proxies, the client's real address is recorded whatever it prepends."""
    trust = ProxyTrust(hops=len(proxies) + 1)
    header = ", ".join([prefix, client, *proxies])
    assert resolve_client_ip(PEER, header, None, trust).ip == _canonical(client)


_TRUSTED = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]
_trusted_ip = st.one_of(st.ip_addresses(network="10.0.0.0/8"), st.ip_addresses(network="fd00::/8")).map(str)
_untrusted_ip = (
    st.ip_addresses()
    .filter(lambda a: a.version == 4 or a.ipv4_mapped is None)
    .filter(lambda a: not any(a in net for net in _TRUSTED))
    .map(str)
)


@given(
    peer=_untrusted_ip,
    xff=st.text(),
    forwarded=st.text(),
    trust=st.sampled_from([CIDRS, FWD_CIDRS]),
)
def test_cidr_untrusted_peer_ignores_headers(peer, xff, forwarded, trust):
    """With CIDR trust, a peer outside the trusted networks is recorded and its headers ignored."""
    result = resolve_client_ip(peer, xff, forwarded, trust)
    assert result.ip == _canonical(peer)


@given(prefix=st.text(), client=_untrusted_ip, proxies=st.lists(_trusted_ip, max_size=4), peer=_trusted_ip)
def test_cidr_client_cannot_choose_its_ip(prefix, client, proxies, peer):
    """With CIDR trust, the first untrusted address from the right is recorded, whatever is prepended."""
    header = ", ".join([prefix, client, *proxies])
    result = resolve_client_ip(peer, header, None, CIDRS)
    assert result.ip == _canonical(client)


@given(prefix=st.text(), client=_untrusted_ip, proxies=st.lists(_trusted_ip, max_size=4), peer=_trusted_ip)
def test_cidr_client_cannot_choose_its_ip_forwarded(prefix, client, proxies, peer):
    """With CIDR trust over Forwarded, a client's prefix cannot change the recorded address."""

    def element(ip: str) -> str:
        return f'for="[{ip}]"' if ":" in ip else f"for={ip}"

    header = ", ".join([prefix, *map(element, [client, *proxies])])
    result = resolve_client_ip(peer, None, header, FWD_CIDRS)
    assert result.ip == _canonical(client)
