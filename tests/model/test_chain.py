"""The link of a record: its digest leaves the link out, and its hash follows the previous one."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from pathlib import Path

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_middleware.model.canonical import canonical_bytes
from audit_middleware.model.chain import (
    GENESIS,
    Link,
    content_digest,
    link_hash,
    link_of,
    linked_text,
    prepared_for_link,
    set_link,
    unlinked_text,
    with_link,
)
from audit_middleware.model.encoding import dumps

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


def test_a_prepared_digest_is_the_digest_of_what_the_store_keeps():
    """Plain or not, the digest computed before linking is the one verify computes from the stored text."""
    plain = {"event": {"id": "e1"}, "audit": {"details": {"a": 1}}}
    details = {"price": Decimal("9.90"), "ratio": 0.5, "none": None}
    odd = {"event": {"id": "e2"}, "audit": {"details": details}}
    for document in (plain, odd):
        prepared, digest = prepared_for_link(dict(document))
        stored = orjson.loads(dumps(prepared))
        assert digest == content_digest(stored)
        set_link(prepared, "c1", 1, GENESIS, digest)
        assert link_of(orjson.loads(dumps(prepared))) == Link("c1", 1, GENESIS, link_hash(GENESIS, digest))
    prepared, _ = prepared_for_link(odd)
    assert prepared["audit"]["details"]["price"] == "9.90"  # replaced by what its stored text reads back as


def test_a_document_that_carries_a_link_is_prepared_without_it():
    """A document linked before (a replay) gets the digest of its content, not of its old link."""
    document = {"event": {"id": "e1"}, "audit": {"details": {"a": 1}}}
    with_link(document, "old", 9, GENESIS)
    _, digest = prepared_for_link(document)
    assert digest == content_digest({"event": {"id": "e1"}, "audit": {"details": {"a": 1}}})


_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=8)
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=300)
@given(
    before=st.dictionaries(_TEXT.filter(lambda key: key != "audit"), _VALUES, max_size=4),
    audit=st.dictionaries(_TEXT.filter(lambda key: key != "chain"), _VALUES, min_size=1, max_size=4),
    chain=_TEXT,
    seq=st.integers(1, 2**53),
)
def test_a_spliced_link_is_the_text_of_the_linked_document(
    before: dict[str, object], audit: dict[str, object], chain: str, seq: int
):
    """The link spliced into the unlinked text gives the bytes ``dumps`` gives the linked document."""
    document = {**before, "audit": audit}
    unlinked = unlinked_text(document)
    assert unlinked is not None
    digest = hashlib.sha256(b"content").digest()
    prev = hashlib.sha256(b"prev").hexdigest()
    link = set_link(document, chain, seq, prev, digest)
    spliced = linked_text(unlinked, link)
    assert spliced == dumps(document).decode("utf-8")


def test_a_document_whose_link_is_not_its_last_member_is_not_cut():
    """Only a document ending with a non-empty ``audit`` that has no link yet can take a spliced link."""
    assert unlinked_text({"event": {"id": "e1"}, "audit": {"a": 1}}) == '{"event":{"id":"e1"},"audit":{"a":1'
    assert unlinked_text({"audit": {"a": 1}, "event": {"id": "e1"}}) is None  # audit is not last
    assert unlinked_text({"event": {"id": "e1"}, "audit": {}}) is None
    assert unlinked_text({"event": {"id": "e1"}, "audit": "text"}) is None
    assert unlinked_text({"event": {"id": "e1"}}) is None
    assert unlinked_text({}) is None
    linked = {"event": {"id": "e1"}, "audit": {"a": 1}}
    with_link(linked, "c1", 1, GENESIS)
    assert unlinked_text(linked) is None  # setting the link again keeps its old place
