"""Client IP resolution that trusts only the configured reverse proxies.

A request reaches the app from its *peer* (``REMOTE_ADDR`` in WSGI, ``scope["client"][0]``
in ASGI). Behind reverse proxies the peer is the nearest proxy, and the client's address
travels in ``X-Forwarded-For`` or RFC 7239 ``Forwarded``, to which each proxy appends the
address it received the request from. Only entries appended by trusted proxies mean
anything: everything to their left was written by the client and may be forged. So the
header is read from the right, only as far as :class:`ProxyTrust` reaches, and a client
can never choose its own recorded IP.

Rules of :func:`resolve_client_ip`:

* **No trust** (the default): the peer is the client; headers are ignored for the IP
  and only reported in ``chain``.
* **hops=N**: N proxies stand in front of the app, so the N-th entry from the right is
  what the outermost proxy saw: the client (werkzeug ``ProxyFix(x_for=N)``). With fewer
  than N entries nothing is trusted and the peer is used. If that entry is no IP address
  (``unknown``, ``_hidden``, garbage), the nearest address to its right, written by a
  trusted proxy, is used, and failing that the peer.
* **cidrs**: headers count only when the peer is inside a trusted network. Entries are
  then walked right to left, passing those inside trusted networks; the first address
  outside them is the client; if all are trusted the leftmost is. An entry that is no
  IP address stops the walk: the client is then the last trusted hop seen (never the
  garbage, never anything left of it). Hosts inside trusted networks are trusted to
  tell the truth, so list only your proxies' networks.
* **Which header**: ``ProxyTrust.header`` names the one header the proxies write; the
  other is ignored. There is deliberately no "prefer ``Forwarded`` when present" mode: a
  proxy that appends only to ``X-Forwarded-For`` passes a client's ``Forwarded`` header
  through untouched, so preferring it would let the client choose its IP.

Parsing: list elements are separated by commas, always, even inside quoted strings (a
node never contains a comma, and honouring quotes would let a client's unbalanced quote
swallow the elements that trusted proxies append after it). Empty elements are ignored
(RFC 9110 list rules). Accepted node forms: ``198.51.100.7``, ``198.51.100.7:8080``,
``2001:db8::1``, ``[2001:db8::1]``, ``[2001:db8::1]:4711`` (ports may be RFC 7239
obfuscated, ``:_p1``), quoted ``Forwarded`` values, IPv6 zone ids (dropped: they name an
interface of the host that wrote them). IPv4-mapped IPv6 becomes the IPv4 form; IPv6 is
compressed and lowercased. IPv4 with leading zeros, IPv4 in brackets, ``unknown`` and
obfuscated ``_identifiers`` are not addresses.

Bounds, so a huge header costs little: only the last :data:`MAX_HEADER_CHARS` characters
and, of those, the last :data:`MAX_ELEMENTS` elements are parsed; a leftmost element
cut by either limit is dropped, never read as a shorter address. The trusted entries sit
at the right end, so padding by a client cannot push them out. ``chain`` keeps at most
the last :data:`MAX_CHAIN` elements.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Literal, TypeAlias

__all__ = [
    "MAX_CHAIN",
    "MAX_ELEMENTS",
    "MAX_HEADER_CHARS",
    "MAX_HOPS",
    "ForwardedHeader",
    "IPNetwork",
    "ProxyTrust",
    "ResolvedIP",
    "resolve_client_ip",
    "truncate_forwarded_element",
    "truncate_ip",
]

ForwardedHeader: TypeAlias = Literal["x-forwarded-for", "forwarded"]
IPNetwork: TypeAlias = IPv4Network | IPv6Network

MAX_HEADER_CHARS = 8192
"""Only this many characters at the right end of a forwarded header are parsed."""
MAX_ELEMENTS = 64
"""Only this many elements at the right end of a forwarded header are parsed."""
MAX_CHAIN = 32
"""``ResolvedIP.chain`` keeps at most this many elements (the rightmost)."""
MAX_HOPS = 32
"""Largest accepted hop count; real deployments have one to three proxies."""

# Longest node worth parsing: a full IPv6 with an interface zone id and a port.
_MAX_NODE_CHARS = 100
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# A dotted quad without leading zeros is already canonical, so it can be returned as
# given: ten times cheaper than IPv4Address() + str() on the per-request path.
_IPV4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")
_OBFUSCATED_PORT = re.compile(r"_[A-Za-z0-9._-]+")
# RFC 7239 placeholders kept by truncation: "unknown" and obfuscated identifiers without
# dots or colons (so an identifier cannot carry an address through).
_PLACEHOLDER = re.compile(r"unknown|_[A-Za-z0-9_-]+", re.IGNORECASE)
_PROTO = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,15}")
_HEADER_NAMES: tuple[ForwardedHeader, ...] = ("x-forwarded-for", "forwarded")


@dataclass(frozen=True, slots=True)
class ProxyTrust:
    """Which reverse proxies in front of the app may report the client's address.

    Set ``hops`` (how many proxies stand in front of the app; it must be exact: too many
    lets a client choose its IP, too few records a proxy) or ``cidrs`` (the networks the
    proxies live in), or neither to trust nothing and record the peer. ``header`` names
    the header those proxies write; the other header is ignored.

    >>> ProxyTrust.from_config(["10.0.0.0/8"]).cidrs
    (IPv4Network('10.0.0.0/8'),)
    """

    hops: int = 0
    cidrs: tuple[IPNetwork, ...] = ()
    header: ForwardedHeader = "x-forwarded-for"

    def __post_init__(self) -> None:
        # Checked here too, not only in from_config: a wrong type would otherwise fail on
        # every request instead of once at start-up.
        if isinstance(self.hops, bool) or not isinstance(self.hops, int):
            raise TypeError(f"ProxyTrust.hops must be an int, got {type(self.hops).__name__}")
        if not 0 <= self.hops <= MAX_HOPS:
            raise ValueError(f"trusted proxy hops must be between 0 and {MAX_HOPS}, got {self.hops}")
        if not all(isinstance(net, IPv4Network | IPv6Network) for net in self.cidrs):
            raise TypeError("ProxyTrust.cidrs must hold ipaddress networks; use ProxyTrust.from_config")
        if self.hops and self.cidrs:
            raise ValueError("trust proxies either by hop count or by CIDR, not both")
        for net in self.cidrs:
            if net.prefixlen == 0:
                raise ValueError(
                    f"trusted proxy CIDR {net} trusts every address, so any client could choose "
                    "its recorded IP; list your proxies' networks instead"
                )
        if self.header not in _HEADER_NAMES:
            raise ValueError(f"ProxyTrust.header must be one of {_HEADER_NAMES}, got {self.header!r}")

    @classmethod
    def from_config(
        cls,
        value: int | str | Iterable[str | IPNetwork] | None,
        *,
        header: ForwardedHeader = "x-forwarded-for",
    ) -> ProxyTrust:
        """Build trust from a setting: ``None`` (trust nothing), a hop count, or CIDRs.

        CIDRs come as an iterable of strings (or networks), or as one comma-separated
        string such as an environment variable holds; a bare address means that host
        alone. Raises ``ValueError`` naming the bad part (negative hops, invalid CIDR,
        host bits set, a ``/0`` that would trust everyone) and ``TypeError`` for a value
        of another type.
        """
        if value is None:
            return cls(header=header)
        if isinstance(value, bool):  # bool is an int: True would silently mean one hop
            raise TypeError("trusted proxies: expected None, a hop count or CIDRs, got a bool")
        if isinstance(value, int):
            if value < 0:
                raise ValueError(f"trusted proxy hops must be >= 0, got {value}")
            return cls(hops=value, header=header)
        if isinstance(value, str):
            items: Iterable[str | IPNetwork] = [part for part in value.split(",") if part.strip()]
        else:
            try:
                items = iter(value)
            except TypeError:
                raise TypeError(
                    f"trusted proxies: expected None, a hop count or CIDRs, got {type(value).__name__}"
                ) from None
        return cls(cidrs=tuple(_parse_cidr(item) for item in items), header=header)


@dataclass(frozen=True, slots=True)
class ResolvedIP:
    """The client address chosen for a request, and what it was chosen from.

    ``ip`` is a normalized address, or ``None`` when none is known (no peer, a unix
    socket, a test client). ``chain`` is the configured forwarded header as received
    (elements split at commas, stripped, empty ones left out, at most the last
    :data:`MAX_CHAIN`), kept for investigation whatever the trust.
    """

    ip: str | None
    chain: tuple[str, ...]


def resolve_client_ip(
    peer: str | None,
    x_forwarded_for: str | None,
    forwarded: str | None,
    trust: ProxyTrust,
) -> ResolvedIP:
    """Choose the client's IP from the peer address and the headers trusted proxies wrote.

    ``peer`` is ``REMOTE_ADDR`` or the ASGI client host. Headers are the raw values,
    several lines of one header joined with ``", "``: WSGI's latin-1 ``str``, or ASGI
    bytes decoded as latin-1. Do not shorten them first (as ``decode_header`` does):
    the trusted entries are at the right end. Never raises; the rules are in the module
    docstring.

    >>> resolve_client_ip("10.0.0.2", "6.6.6.6, 198.51.100.7", None, ProxyTrust(hops=1))
    ResolvedIP(ip='198.51.100.7', chain=('6.6.6.6', '198.51.100.7'))
    """
    if trust.header == "forwarded":
        raw, node_of = forwarded, _forwarded_for
    else:
        raw, node_of = x_forwarded_for, _same
    elements = _split_list(raw) if raw else []
    chain = tuple(elements[-MAX_CHAIN:])

    if trust.hops:
        if len(elements) >= trust.hops:
            # Left to right from the N-th entry from the right: the first address found
            # is the client, or else the nearest trusted hop to its right.
            for element in elements[-trust.hops :]:
                ip = _canonical_node(node_of(element))
                if ip is not None:
                    return ResolvedIP(ip, chain)
        return ResolvedIP(_canonical_node(peer), chain)

    client = _canonical_node(peer)
    if not trust.cidrs or client is None or not _is_trusted(client, trust.cidrs):
        return ResolvedIP(client, chain)
    for element in reversed(elements):
        ip = _canonical_node(node_of(element))
        if ip is None:
            break  # not an address: nothing at or left of it can be vouched for
        client = ip
        if not _is_trusted(ip, trust.cidrs):
            break
    return ResolvedIP(client, chain)


def truncate_ip(ip: str) -> str:
    """Blur an address for privacy: IPv4 to its /24, IPv6 to its /48 network address.

    IPv4-mapped IPv6 is treated as IPv4. Raises ``ValueError`` for a non-address, so a
    value that cannot be blurred is never passed through unchanged.

    >>> truncate_ip("198.51.100.7"), truncate_ip("2001:db8:abcd:12::1")
    ('198.51.100.0', '2001:db8:abcd::')
    """
    canonical = _canonical_node(ip.strip(" \t"))
    if canonical is None:
        raise ValueError(f"not an IP address: {ip[:_MAX_NODE_CHARS]!r}")
    address = ipaddress.ip_address(canonical)
    if isinstance(address, IPv4Address):
        return str(IPv4Address(int(address) & ~0xFF))
    return str(IPv6Address(int(address) >> 80 << 80))


def truncate_forwarded_element(element: str) -> str | None:
    """One element of a forwarded chain with every address in it truncated (``truncate_ip``).

    ``X-Forwarded-For`` nodes in any accepted form (``198.51.100.7:4711``,
    ``[2001:db8::1]:4711``) become the truncated address, without the port. An RFC 7239
    element keeps ``for=`` and ``by=`` (truncated, quoted with brackets for IPv6) and
    ``proto=``; ``host=`` and extensions are dropped, since they may hold an address.
    ``unknown`` and obfuscated identifiers stay. None when anything cannot be read as
    one of these: the caller masks the element rather than keep what may be an address.

    >>> truncate_forwarded_element('for="[2001:db8:1:2::7]:4711";proto=https')
    'for="[2001:db8:1::]";proto=https'
    """
    if "=" not in element:
        return _truncated_node(element)
    kept: list[str] = []
    for pair in element.split(";"):
        name, equals, value = pair.partition("=")
        name = name.strip(" \t").lower()
        value = value.strip(" \t")
        if not equals:
            if name:
                return None
            continue  # an empty pair (a trailing ';')
        if name in ("for", "by"):
            if value.startswith('"'):
                if len(value) < 2 or not value.endswith('"'):
                    return None
                value = value[1:-1]
            node = _truncated_node(value)
            if node is None:
                return None
            kept.append(f'{name}="[{node}]"' if ":" in node else f"{name}={node}")
        elif name == "proto" and _PROTO.fullmatch(value):
            kept.append(f"proto={value}")
    return ";".join(kept) or None


def _truncated_node(node: str) -> str | None:
    """A node's truncated address, a placeholder as it is, or None."""
    node = node.strip(" \t")
    if _PLACEHOLDER.fullmatch(node):
        return node
    canonical = _canonical_node(node)
    return None if canonical is None else truncate_ip(canonical)


def _split_list(value: str) -> list[str]:
    """The rightmost elements of a comma-separated header, stripped, empty ones left out."""
    cut = len(value) > MAX_HEADER_CHARS
    if cut:
        value = value[-MAX_HEADER_CHARS:]
    parts = value.rsplit(",", MAX_ELEMENTS)
    if cut or len(parts) > MAX_ELEMENTS:
        # The leftmost piece may be a fragment ("1.2.3.4" cut from "11.2.3.4"): drop it.
        del parts[0]
    return [element for part in parts if (element := part.strip(" \t"))]


def _same(element: str) -> str:
    """An ``X-Forwarded-For`` element is the node itself."""
    return element


def _forwarded_for(element: str) -> str | None:
    """The unquoted ``for=`` node of one RFC 7239 element, or None if absent or malformed."""
    node: str | None = None
    for pair in element.split(";"):
        name, equals, value = pair.partition("=")
        if name.strip(" \t").lower() != "for":
            continue
        if node is not None or not equals:
            return None  # a repeated or valueless for= is malformed (RFC 7239 section 4)
        node = value.strip(" \t")
    if node is not None and node.startswith('"'):
        if len(node) < 2 or not node.endswith('"'):
            return None
        # No address needs an escape, so none is undone: a backslash left in place
        # makes the node invalid, as it should.
        node = node[1:-1]
    return node


def _canonical_node(node: str | None) -> str | None:
    """The canonical address in a node (``host``, ``host:port``, ``[v6]:port``), or None."""
    if not node or len(node) > _MAX_NODE_CHARS:
        return None
    if _IPV4.fullmatch(node):  # the common case first, and cheaply
        return node
    if node[0] == "[":
        return _canonical_ipv6(_unbracket(node))
    if node.count(":") == 1:  # IPv4 with a port: IPv6 has at least two colons
        host, _, port = node.partition(":")
        return host if _valid_port(port) and _IPV4.fullmatch(host) else None
    return _canonical_ipv6(node)


def _unbracket(node: str) -> str | None:
    """The host inside ``[host]`` or ``[host]:port``, or None if malformed."""
    host, bracket, port = node[1:].partition("]")
    if bracket and (not port or (port[0] == ":" and _valid_port(port[1:]))):
        return host
    return None


def _canonical_ipv6(host: str | None) -> str | None:
    """Compressed lowercase IPv6 without zone id, IPv4-mapped as IPv4; None if invalid."""
    if host is None or ":" not in host:  # cheap early exit: no colon, no IPv6
        return None
    try:
        address = IPv6Address(host)
    except ValueError:
        return None
    mapped = address.ipv4_mapped
    if mapped is not None:
        return str(mapped)
    if address.scope_id is not None:
        address = IPv6Address(int(address))  # rebuilt from the number, without the zone id
    return str(address)


def _valid_port(port: str) -> bool:
    """A decimal port, or an RFC 7239 obfuscated one such as ``_p1``."""
    if port.isascii() and port.isdigit():
        return len(port) <= 5 and int(port) <= 65535
    return _OBFUSCATED_PORT.fullmatch(port) is not None


def _is_trusted(ip: str, cidrs: tuple[IPNetwork, ...]) -> bool:
    """Whether a canonical address lies in one of the trusted networks."""
    address = ipaddress.ip_address(ip)
    # An IPv4 address is never "in" an IPv6 network and vice versa: no error, just False.
    return any(address in net for net in cidrs)


def _parse_cidr(item: str | IPNetwork) -> IPNetwork:
    """One trusted network from configuration, with an error that names the bad value."""
    if isinstance(item, IPv4Network | IPv6Network):
        return item
    if not isinstance(item, str):
        raise TypeError(f"trusted proxy CIDR must be a string, got {type(item).__name__}")
    try:
        return ipaddress.ip_network(item.strip(), strict=True)
    except ValueError as exc:
        raise ValueError(f"invalid trusted proxy CIDR {item.strip()!r}: {exc}") from exc
