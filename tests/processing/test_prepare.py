"""The processing stage: redaction applied to a whole record, IP truncation of every address in it."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit_middleware.model.actions import CATALOG
from audit_middleware.model.encoding import dumps
from audit_middleware.model.event import Actor, AuditEvent, RequestFacts
from audit_middleware.processing.prepare import prepare
from audit_middleware.processing.redaction import Redactor
from tests.capture.test_clientip import _addresses_in, _forwarded_element, _xff_element

TRUNCATING = Redactor(truncate_ips=True)


def _event(client_ip: str | None, chain: tuple[str, ...]) -> AuditEvent:
    return AuditEvent(
        id="0190a000-0000-7000-8000-000000000001",
        unix_ms=1_700_000_000_000,
        action=CATALOG.get("update"),
        actor=Actor(id="u1"),
        request=RequestFacts(method="POST", path="/x", client_ip=client_ip, forwarded_chain=chain),
    )


def _is_truncated(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return int(address) & (0xFF if address.version == 4 else (1 << 80) - 1) == 0


def _full_addresses(event: AuditEvent) -> list[str]:
    """Addresses in the stored record's IP fields that are not blurred to their network."""
    document = event.to_document()
    texts = [
        document.get("source", {}).get("ip") or "",
        *document.get("audit", {}).get("source", {}).get("forwarded", []),
    ]
    return [str(a) for text in texts for a in _addresses_in(text) if not _is_truncated(a)]


@pytest.mark.parametrize(
    ("element", "expected"),
    [
        pytest.param("198.51.100.77", "198.51.100.0", id="ipv4"),
        pytest.param("198.51.100.77:4711", "198.51.100.0", id="ipv4 with port"),
        pytest.param("2001:db8:1:2::7", "2001:db8:1::", id="ipv6"),
        pytest.param("[2001:db8:1:2::7]", "2001:db8:1::", id="bracketed ipv6"),
        pytest.param("[2001:db8:1:2::7]:4711", "2001:db8:1::", id="bracketed ipv6 with port"),
        pytest.param("::ffff:198.51.100.77", "198.51.100.0", id="mapped ipv4"),
        pytest.param('for="198.51.100.77:4711"', "for=198.51.100.0", id="forwarded quoted with port"),
        pytest.param(
            'for="[2001:db8:1:2::7]:4711";proto=https;by=203.0.113.9',
            'for="[2001:db8:1::]";proto=https;by=203.0.113.0',
            id="forwarded ipv6 with port and parameters",
        ),
        pytest.param("For=198.51.100.77;host=198.51.100.78", "for=198.51.100.0", id="forwarded host dropped"),
        pytest.param("unknown", "unknown", id="unknown"),
        pytest.param("for=_hidden", "for=_hidden", id="obfuscated"),
        pytest.param("x198.51.100.77y", "[REDACTED]", id="garbage holding an address"),
        pytest.param("_1.2.3.4", "[REDACTED]", id="placeholder holding an address"),
        pytest.param('for="198.51.100.77', "[REDACTED]", id="unbalanced quote"),
    ],
)
def test_every_form_of_a_forwarded_address_is_truncated(element: str, expected: str) -> None:
    """truncate_ips truncates each forwarded element whatever its form; what cannot be read is masked."""
    event = prepare(_event("198.51.100.77", ("10.0.0.9", element)), TRUNCATING)
    assert event.request is not None
    assert event.request.client_ip == "198.51.100.0"
    assert event.request.forwarded_chain == ("10.0.0.0", expected)


def test_the_chain_is_truncated_without_a_client_ip() -> None:
    """A request without a peer address (a unix socket) still has its forwarded chain truncated."""
    event = prepare(_event(None, ("198.51.100.77:4711",)), TRUNCATING)
    assert event.request is not None
    assert event.request.forwarded_chain == ("198.51.100.0",)


def test_without_truncation_the_chain_is_kept_as_received() -> None:
    """The raw chain is kept for investigations unless truncation is on."""
    chain = ('for="[2001:db8::7]:4711";proto=https', "198.51.100.77:4711")
    event = prepare(_event("198.51.100.77", chain), Redactor())
    assert event.request is not None
    assert event.request.forwarded_chain == chain


@given(
    client=st.one_of(st.none(), st.ip_addresses().map(str)),
    chain=st.lists(st.one_of(_xff_element, _forwarded_element), max_size=6),
)
def test_no_full_address_survives_truncation(client: str | None, chain: list[str]) -> None:
    """Property: with truncate_ips, no address in the stored record's IP fields is more than its network."""
    event = prepare(_event(client, tuple(chain)), TRUNCATING)
    assert _full_addresses(event) == []
    dumps(event.to_document())  # and the record still encodes
