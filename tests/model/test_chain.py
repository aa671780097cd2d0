"""The link of a record: its digest leaves the link out, and its hash follows the previous one."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import orjson

from audit_middleware.model.canonical import canonical_bytes
from audit_middleware.model.chain import GENESIS, Link, content_digest, link_hash, link_of, with_link

VECTORS = json.loads((Path(__file__).parent / "vectors" / "canonical.json").read_text(encoding="utf-8"))


def test_link_vectors():
    """The committed digest and first hash of an audit document match, computed two ways."""
    for vector in VECTORS["links"]:
        document = orjson.loads(vector["document"])
        digest = content_digest(document)
        assert digest.hex() == vector["digest"]
        assert digest == hashlib.sha256(canonical_bytes(document)).digest()
        assert link_hash(vector["prev"], digest) == vector["hash"]
        assert hashlib.sha256(bytes(32) + digest).hexdigest() == vector["hash"]


def test_with_link_sets_the_chain_field_and_the_digest_ignores_it():
    """Chaining a document adds audit.chain; the digest is the same with or without it."""
    document = {"event": {"id": "e1"}, "audit": {"details": {"a": 1}}}
    before = content_digest(document)
    link = with_link(document, "c1", 1, GENESIS)
    assert document["audit"]["chain"] == {"id": "c1", "seq": 1, "prev": GENESIS, "hash": link.hash}
    assert content_digest(document) == before
    assert link_of(document) == link
    assert link.hash == link_hash(GENESIS, before)


def test_each_hash_depends_on_the_previous_one():
    """The same document after two different records gets two different hashes."""
    first = with_link({"event": {"id": "a"}}, "c", 1, GENESIS)
    second = with_link({"event": {"id": "b"}}, "c", 2, first.hash)
    other = with_link({"event": {"id": "b"}}, "c", 2, GENESIS)
    assert second.hash != other.hash


def test_a_changed_value_changes_the_digest():
    """Changing any value of the document changes its digest."""
    document = {"user": {"email": "ann@example.com"}, "audit": {}}
    changed = {"user": {"email": "mallory@example.com"}, "audit": {}}
    assert content_digest(document) != content_digest(changed)


def test_malformed_links_are_no_links():
    """A missing, partial or ill-typed audit.chain reads as no link at all."""
    assert link_of({"audit": {}}) is None
    assert link_of({"audit": "x"}) is None
    assert link_of({"audit": {"chain": {"id": "c", "seq": "1", "prev": GENESIS, "hash": GENESIS}}}) is None
    assert link_of({"audit": {"chain": {"id": "c", "seq": 1, "prev": "zz", "hash": GENESIS}}}) is None
    good = {"audit": {"chain": Link("c", 3, GENESIS, "ab" * 32).as_field()}}
    assert link_of(good) == Link("c", 3, GENESIS, "ab" * 32)
