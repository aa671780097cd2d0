"""The hash chain of records: each record's link, computed from its redacted document.

A chain is one writer's sequence of records (the SQLite store's, one OpenSearch
shipper's). Record ``n`` of a chain carries ``audit.chain``::

    {"id": <chain id>, "seq": n, "prev": <hash of record n-1>, "hash": <its own hash>}

    digest_n = SHA-256(JCS(document without audit.chain))
    hash_n   = SHA-256(hash_{n-1} || digest_n)          (hash_0 = 32 zero bytes)

``JCS`` is ``model.canonical`` (RFC 8785). The document enters through its digest, so a
link can be checked without the document: an export of one tenant carries, for the
records of other tenants between its own, only their links and digests, and still
verifies end to end without revealing them. The link fields are outside the digest:
a record moved to another place keeps a valid ``hash`` for its own ``prev``, which is how
``verify`` tells a reordered record (intact, in the wrong place) from a modified one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from audit_middleware.model.canonical import canonical_bytes, plain_canonical_bytes
from audit_middleware.model.encoding import dumps, loads

__all__ = [
    "CHAIN_FIELD",
    "GENESIS",
    "Link",
    "content_digest",
    "link_hash",
    "link_of",
    "linked_text",
    "next_link",
    "prepared_for_link",
    "set_link",
    "unlinked_text",
    "with_link",
]

CHAIN_FIELD: Final = "chain"  # under "audit"
GENESIS: Final = "0" * 64
"""The ``prev`` of a chain's first record."""


@dataclass(frozen=True, slots=True)
class Link:
    """A record's place in its chain, as ``audit.chain`` holds it."""

    chain: str
    seq: int
    prev: str
    hash: str

    def as_field(self) -> dict[str, Any]:
        """The ``audit.chain`` object."""
        return {"id": self.chain, "seq": self.seq, "prev": self.prev, "hash": self.hash}


def content_digest(document: Mapping[str, Any]) -> bytes:
    """SHA-256 of the canonical bytes of ``document`` without its ``audit.chain``."""
    audit = document.get("audit")
    if isinstance(audit, Mapping) and CHAIN_FIELD in audit:
        document = {**document, "audit": {k: v for k, v in audit.items() if k != CHAIN_FIELD}}
    return hashlib.sha256(canonical_bytes(document)).digest()


def prepared_for_link(document: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """``document`` as the store will keep it, and its content digest, before it is linked.

    The digest must be of the JSON value the store keeps (``model.encoding.dumps``, which
    writes odd values such as a ``Decimal`` as text), because that is what ``verify``
    reads back. A document of plain JSON values is that value already, so its digest
    comes from one encoding; any other is replaced by what its stored text reads back as.
    The digest does not depend on the link, so a writer computes it before it knows its
    place in the chain, outside the write transaction.
    """
    audit = document.get("audit")
    if not (isinstance(audit, Mapping) and CHAIN_FIELD in audit):
        canonical = plain_canonical_bytes(document)
        if canonical is not None:
            return document, hashlib.sha256(canonical).digest()
    stored = loads(dumps(document))
    return stored, content_digest(stored)


def next_link(chain: str, seq: int, prev: str, digest: bytes) -> Link:
    """The link of the record whose content digest is ``digest``, at ``seq`` after ``prev``."""
    return Link(chain, seq, prev, link_hash(prev, digest))


def set_link(document: dict[str, Any], chain: str, seq: int, prev: str, digest: bytes) -> Link:
    """Chain ``document`` (whose content digest is ``digest``) in place after ``prev``."""
    link = next_link(chain, seq, prev, digest)
    document.setdefault("audit", {})[CHAIN_FIELD] = link.as_field()
    return link


def unlinked_text(document: Mapping[str, Any]) -> str | None:
    """The stored JSON text of ``document`` cut where its link goes, or None when it cannot be.

    A writer encodes the document once, before it knows its place in the chain, and
    ``linked_text`` splices the link in: the result is exactly ``dumps`` of the document
    with ``audit.chain`` set (``set_link``). That holds when ``audit`` is the document's last
    key and a non-empty object without ``chain`` (what ``AuditEvent.to_document`` builds):
    ``audit.chain`` is then the last member of the last member, so its text ends the
    document's text but for the two closing braces. Any other document returns None
    and is linked, then encoded whole.
    """
    if type(document) is not dict or not document:
        return None
    audit = document.get("audit")
    if type(audit) is not dict or not audit or CHAIN_FIELD in audit or next(reversed(document)) != "audit":
        return None
    encoded = dumps(document)
    if not encoded.endswith(b"}}"):  # defensive: dumps of such a document always ends so
        return None
    return encoded[:-2].decode("utf-8")


def linked_text(unlinked: str, link: Link) -> str:
    """The stored text of a document linked as ``link``, from its ``unlinked_text``."""
    return f'{unlinked},"{CHAIN_FIELD}":{dumps(link.as_field()).decode("utf-8")}}}}}'


def link_hash(prev: str, digest: bytes) -> str:
    """``hash_n`` (hex) from ``hash_{n-1}`` (hex) and the record's content digest."""
    return hashlib.sha256(bytes.fromhex(prev) + digest).hexdigest()


def with_link(document: dict[str, Any], chain: str, seq: int, prev: str) -> Link:
    """Chain ``document`` in place after ``prev``: sets ``audit.chain``, returns the link."""
    return set_link(document, chain, seq, prev, content_digest(document))


def link_of(document: Mapping[str, Any]) -> Link | None:
    """The link a stored document carries, or None when it has none (or a malformed one)."""
    audit = document.get("audit")
    field = audit.get(CHAIN_FIELD) if isinstance(audit, Mapping) else None
    if not isinstance(field, Mapping):
        return None
    chain, seq, prev, hash_ = field.get("id"), field.get("seq"), field.get("prev"), field.get("hash")
    if not (isinstance(chain, str) and type(seq) is int and _is_hash(prev) and _is_hash(hash_)):
        return None
    return Link(chain, seq, str(prev), str(hash_))


def _is_hash(value: object) -> bool:
    if not isinstance(value, str) or len(value) != 64:
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return True


LINK_LINE_KEY: Final = "chain_link"


def link_line(document: Mapping[str, Any]) -> str:
    """The export line that stands for a record left out of a file: its link and content
    digest, never its content (``{"chain_link": {...}}``; ``""`` for an unchained record)."""
    link = link_of(document)
    if link is None:
        return ""
    fields = {**link.as_field(), "digest": content_digest(document).hex()}
    return dumps({LINK_LINE_KEY: fields}).decode("utf-8")
