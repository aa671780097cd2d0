"""Hash chains on the real node: the shipper links and checkpoints, verify catches each tampering."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from audit_middleware.model.chain import content_digest, link_hash
from audit_middleware.opensearch.chains import checkpoints_stream
from tests.chain_support import Trail, findings, opensearch_trail
from tests.conftest import OPENSEARCH_URL

pytestmark = pytest.mark.opensearch


@pytest.fixture
def trail(opensearch, unique_name, tmp_path: Path) -> Iterator[Trail]:
    """A freshly set-up prefix with ISM policies, removed afterwards."""
    with opensearch_trail(opensearch, unique_name, tmp_path) as made:
        yield made


def _search_hit(trail: Trail, seq: int) -> dict[str, Any]:
    body = {"query": {"term": {"audit.chain.seq": seq}}, "seq_no_primary_term": True}
    return trail.client.search(index=f"{trail.prefix}-*", body=body)["hits"]["hits"][0]


def test_shipped_records_are_chained_checkpointed_and_verify(trail: Trail):
    """A shipper's records carry one chain, checkpoints reach their stream and the anchor; verify is clean."""
    ids = trail.ship(35)
    report = trail.verify()
    assert report.intact, report.as_json()
    (chain,) = report.chains
    assert (chain.records, chain.verified, chain.last_seq) == (35, 35, 35)
    assert chain.checkpoints >= 3
    assert chain.chain.endswith("-standard")
    assert {hit["_id"] for hit in trail.hits()} == set(ids)


def test_a_restarted_shipper_continues_its_chain(trail: Trail):
    """A second process on the same state directory takes the slot again and continues the chain."""
    trail.ship(12)
    trail.ship(12)
    report = trail.verify()
    assert report.intact, report.as_json()
    assert len(report.chains) == 1
    assert report.chains[0].last_seq == 24


def test_each_tampering_is_caught_on_the_node(trail: Trail):
    """_update of a field, delete, a forged insert, a swap and the newest records dropped: each is named."""
    trail.ship(40)
    changed = _search_hit(trail, 7)
    trail.client.update(  # _update of one field, on its backing index
        index=changed["_index"],
        id=changed["_id"],
        body={"doc": {"user": {"email": "mallory@x.io"}}},
        params={"refresh": "true"},
    )
    deleted = _search_hit(trail, 12)
    trail.client.delete(index=deleted["_index"], id=deleted["_id"], params={"refresh": "true"})
    first, second = _search_hit(trail, 20), _search_hit(trail, 21)
    a, b = first["_source"], second["_source"]
    a["audit"]["chain"]["seq"], b["audit"]["chain"]["seq"] = 21, 20
    trail.update(first, a)
    trail.update(second, b)
    forged = _search_hit(trail, 25)["_source"]
    forged["event"]["id"] = "01a00000-0000-7000-8000-0000000000f0"
    forged["audit"]["details"] = {"forged": True}
    forged["audit"]["chain"]["hash"] = link_hash(forged["audit"]["chain"]["prev"], content_digest(forged))
    trail.client.index(
        index=f"{trail.prefix}-standard",
        id=forged["event"]["id"],
        body=forged,
        params={"op_type": "create", "refresh": "true"},
    )
    trail.client.delete_by_query(
        index=f"{trail.prefix}-*",
        body={"query": {"range": {"audit.chain.seq": {"gt": 35}}}},
        params={"refresh": "true"},
    )
    trail.client.delete_by_query(
        index=checkpoints_stream(trail.prefix),
        body={"query": {"range": {"checkpoint.last_seq": {"gt": 30}}}},
        params={"refresh": "true"},
    )
    report = trail.verify()
    assert not report.intact
    assert findings(report, "modified") == [(7, 7)]
    assert findings(report, "missing") == [(12, 12)]
    assert sorted(findings(report, "reordered")) == [(20, 20), (21, 21)]
    inserted = [f for chain in report.chains for f in chain.findings if f.kind == "inserted"]
    assert [f.event_id for f in inserted] == [forged["event"]["id"]]
    assert findings(report, "truncated") == [(36, 40)]
    assert findings(trail.verify(anchored=False), "truncated") == []  # without the anchor: not seen


def test_the_shipper_only_creates(trail: Trail):
    """A replayed record (same id, create) is a conflict on the node, never an overwrite."""
    trail.ship(3)
    hit = trail.hits()[0]
    answer = trail.client.bulk(
        body=[
            {"create": {"_index": f"{trail.prefix}-standard", "_id": hit["_id"]}},
            {"@timestamp": hit["_source"]["@timestamp"]},
        ],
    )
    assert answer["items"][0]["create"]["status"] == 409
    assert trail.verify().intact


def test_the_verify_command_on_the_cluster(trail: Trail):
    """`verify --store opensearch` reads the prefix's chains and checkpoints: 0 when clean, 1 tampered."""
    from click.testing import CliRunner  # noqa: PLC0415

    from audit_middleware.cli import main  # noqa: PLC0415

    trail.ship(25)
    public = trail.tmp_path / "chain.pub"
    public.write_bytes(trail.signer.public_pem())
    environ = {"AUDIT_OPENSEARCH_URL": OPENSEARCH_URL, "AUDIT_OPENSEARCH_PREFIX": trail.prefix}
    args = ["verify", "--store", "opensearch", "--public-key", str(public), "--anchor", str(trail.anchor)]
    clean = CliRunner().invoke(main, args, env=environ)
    assert clean.exit_code == 0, clean.output
    assert "verified   25 of 25 records" in clean.output
    hit = _search_hit(trail, 3)
    trail.client.delete(index=hit["_index"], id=hit["_id"], params={"refresh": "true"})
    tampered = CliRunner().invoke(main, args, env=environ)
    assert tampered.exit_code == 1
    assert "  missing    seq 3" in tampered.output
