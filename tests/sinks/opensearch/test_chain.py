"""The shipper's chains: a slot lease per process, heads that survive a restart, checkpoints as items."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from audit_middleware.model.chain import content_digest, link_hash, link_of
from audit_middleware.model.checkpoints import Signer, generate_key_pem
from audit_middleware.model.encoding import dumps
from audit_middleware.sinks.anchor import FileAnchor
from audit_middleware.sinks.chain import ChainPolicy
from audit_middleware.sinks.opensearch.chain import ShipperChains
from tests.fork_support import in_forked_child


def _chains(state: Path, **options: object) -> ShipperChains:
    policy = ChainPolicy(
        signer=Signer.from_pem(generate_key_pem()), every=3, anchor=FileAnchor(state / "a.jsonl")
    )
    return ShipperChains(state, policy, "audit_checkpoints", **options)  # type: ignore[arg-type]


def _link(chains: ShipperChains, tier: str = "standard") -> dict:
    document: dict = {"event": {"id": "e"}, "audit": {}}
    chains.link(document, f"audit-{tier}", tier)
    return document


def test_two_live_holders_never_share_a_chain(tmp_path: Path):
    """Two chain sets on one state directory take two slots; a released slot is taken again."""
    first, second = _chains(tmp_path), _chains(tmp_path)
    one, two = link_of(_link(first)), link_of(_link(second))
    assert one is not None
    assert two is not None
    assert one.chain != two.chain
    first.release()
    third = _chains(tmp_path)
    again = link_of(_link(third))
    assert again is not None
    assert again.chain == one.chain
    assert again.seq == 2  # continued from the saved head
    assert again.prev == one.hash


def test_chains_are_per_tier_and_checkpoints_become_items(tmp_path: Path):
    """Each tier has its own chain; every third link makes a checkpoint item (stream and anchor)."""
    chains = _chains(tmp_path)
    for _ in range(3):
        _link(chains, "standard")
    extended = link_of(_link(chains, "extended"))
    assert extended is not None
    assert extended.chain.endswith("-extended")
    assert extended.seq == 1
    (item,) = chains.take_items()
    assert item.index == "audit_checkpoints"
    body = orjson.loads(item.document)
    assert body["checkpoint"]["last_seq"] == 3
    assert body["checkpoint"]["index"] == "audit-standard"
    assert body["event"]["id"] == item.id  # what a spool replay reads back
    assert len((tmp_path / "a.jsonl").read_text().splitlines()) == 1


def test_a_lost_head_file_is_recovered_from_the_store(tmp_path: Path):
    """Without its head file (the state directory kept), the chain continues from the store's last record."""
    asked: list[str] = []

    def find_head(chain: str) -> tuple[int, str]:
        asked.append(chain)
        return (41, "ab" * 32)

    first = _chains(tmp_path, find_head=find_head)
    _link(first)
    first.release()  # a new state directory: nothing was asked
    assert asked == []
    for head in (tmp_path / "chains").glob("os-*.json"):
        head.unlink()
    chains = _chains(tmp_path, find_head=find_head)
    link = link_of(_link(chains))
    assert link is not None
    assert (link.seq, link.prev) == (42, "ab" * 32)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_takes_a_slot_of_its_own(tmp_path: Path):
    """A child forked after the parent linked (gunicorn --preload) extends another chain."""
    chains = _chains(tmp_path)
    parent = link_of(_link(chains))
    assert parent is not None

    def child() -> str:
        link = link_of(_link(chains))
        assert link is not None
        return link.chain

    assert in_forked_child(child) != parent.chain


def test_the_final_take_checkpoints_every_chain_end(tmp_path: Path):
    """take_items(final=True) checkpoints each chain with records since its last checkpoint, due or not."""
    chains = _chains(tmp_path)
    for _ in range(4):  # a checkpoint at 3, one record after it
        _link(chains, "standard")
    _link(chains, "extended")
    assert len(chains.take_items()) == 1
    final = [orjson.loads(item.document)["checkpoint"] for item in chains.take_items(final=True)]
    assert sorted((c["chain"].rsplit("-", 1)[1], c["first_seq"], c["last_seq"]) for c in final) == [
        ("extended", 1, 1),
        ("standard", 4, 4),
    ]
    assert chains.take_items(final=True) == []  # nothing new: no empty checkpoint
    assert len((tmp_path / "a.jsonl").read_text().splitlines()) == 3  # each one anchored when made


def test_a_document_with_values_json_lacks_is_linked_as_it_will_be_read(tmp_path: Path):
    """A Decimal (an ORM change's price, say) neither stops the link nor breaks it: the document
    sent is what its JSON reads back as, and its hash follows from that."""
    chains = _chains(tmp_path)
    document = {"event": {"id": "e"}, "audit": {"details": {"price": Decimal("9.90")}}}
    sent = chains.link(document, "audit-standard", "standard")
    read_back = orjson.loads(dumps(sent))
    link = link_of(read_back)
    assert link is not None
    assert read_back["audit"]["details"]["price"] == "9.90"
    assert link.hash == link_hash(link.prev, content_digest(read_back))
