"""Hash chains on the real node: the shipper links and checkpoints, verify catches each tampering."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from audit_middleware.model.chain import content_digest, link_hash
from audit_middleware.model.checkpoints import KeyRing, Signer, generate_key_pem
from audit_middleware.opensearch.chains import checkpoints_stream
from audit_middleware.opensearch.connection import ConnectionSettings
from audit_middleware.opensearch.provisioning import SetupConfig, apply
from audit_middleware.query.verify import VerifyReport, verify_chains
from audit_middleware.query.verify_sources import OpenSearchSource, read_anchor
from audit_middleware.sinks.anchor import FileAnchor
from audit_middleware.sinks.chain import ChainPolicy
from audit_middleware.sinks.opensearch.shipper import ShipperOptions
from audit_middleware.sinks.opensearch.sink import OpenSearchSink
from tests.conftest import OPENSEARCH_URL
from tests.integration.layout import remove_layout
from tests.query.conftest import make_event

pytestmark = pytest.mark.opensearch

FAST = ShipperOptions(flush_interval=0.1, backoff_base=0.05, backoff_max=0.5, request_timeout=5.0)
DAY = 86_400_000


class Trail:
    """A set-up prefix, a key and an anchor, and records shipped by a real shipper."""

    def __init__(self, client: Any, prefix: str, tmp_path: Path) -> None:
        self.client, self.prefix, self.tmp_path = client, prefix, tmp_path
        self.signer = Signer.from_pem(generate_key_pem())
        self.anchor = tmp_path / "anchor.jsonl"

    def ship(self, count: int, *, state: str = "state") -> list[str]:
        sink = OpenSearchSink(
            settings=ConnectionSettings(urls=(OPENSEARCH_URL,), prefix=self.prefix, timeout=5.0),
            state_dir=self.tmp_path / state,
            options=FAST,
            install_signal_handlers=False,
            chain=ChainPolicy(signer=self.signer, every=10, anchor=FileAnchor(self.anchor)),
        )
        events = [make_event("create", ago_ms=count - index) for index in range(count)]
        for event in events:
            sink.emit(event)
        assert sink.flush(30)
        sink.close(10)
        self.refresh()
        return [event.id for event in events]

    def refresh(self) -> None:
        self.client.indices.refresh(
            index=f"{self.prefix}-*,{checkpoints_stream(self.prefix)}", params={"ignore_unavailable": "true"}
        )

    def hits(self) -> list[dict[str, Any]]:
        """The stored records in chain order (with their backing index)."""
        body = {
            "size": 1000,
            "sort": [{"audit.chain.seq": "asc"}],
            "query": {"exists": {"field": "audit.chain.id"}},
        }
        return self.client.search(index=f"{self.prefix}-*", body=body)["hits"]["hits"]

    def at(self, seq: int) -> dict[str, Any]:
        return next(hit for hit in self.hits() if hit["_source"]["audit"]["chain"]["seq"] == seq)

    def update(self, hit: dict[str, Any], document: dict[str, Any]) -> None:
        """Overwrite a stored record in its backing index, as someone with write access to it can."""
        self.client.index(
            index=hit["_index"],
            id=hit["_id"],
            body=document,
            params={"if_seq_no": hit["_seq_no"], "if_primary_term": hit["_primary_term"], "refresh": "true"},
        )

    def verify(self, *, anchored: bool = True, now_ms: int | None = None) -> VerifyReport:
        source = OpenSearchSource(self.client, self.prefix)
        return verify_chains(
            source.entries(),
            stored_checkpoints=source.checkpoints(),
            anchored_checkpoints=list(read_anchor(self.anchor)) if anchored and self.anchor.exists() else [],
            keys=KeyRing.from_pem([self.signer.public_pem()]),
            retention_horizons=source.retention_horizons(now_ms or int(time.time() * 1000)),
        )


def kinds(report: VerifyReport, kind: str) -> list[tuple[int, int]]:
    return [(f.first_seq, f.last_seq) for chain in report.chains for f in chain.findings if f.kind == kind]


@pytest.fixture
def trail(opensearch, unique_name, tmp_path: Path) -> Iterator[Trail]:
    """A freshly set-up prefix with ISM policies, removed afterwards."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        apply(opensearch, SetupConfig(prefix=unique_name, replicas=0, require_ism=False, alert_rules=()))
    yield Trail(opensearch, unique_name, tmp_path)
    remove_layout(opensearch, unique_name)


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
    assert kinds(report, "modified") == [(7, 7)]
    assert kinds(report, "missing") == [(12, 12)]
    assert sorted(kinds(report, "reordered")) == [(20, 20), (21, 21)]
    inserted = [f for chain in report.chains for f in chain.findings if f.kind == "inserted"]
    assert [f.event_id for f in inserted] == [forged["event"]["id"]]
    assert kinds(report, "truncated") == [(36, 40)]
    assert kinds(trail.verify(anchored=False), "truncated") == []  # without the anchor: not seen


def test_retention_by_ism_is_told_from_deletion(trail: Trail):
    """The oldest backing index deleted (as ISM does): retention once the tier's age passed, else missing."""
    trail.ship(15)
    stream = f"{trail.prefix}-standard"
    trail.client.indices.rollover(alias=stream)
    trail.ship(15)
    oldest = sorted(
        index["index_name"]
        for index in trail.client.indices.get_data_stream(name=stream)["data_streams"][0]["indices"]
    )[0]
    trail.client.indices.delete(index=oldest)
    trail.refresh()
    now = trail.verify()
    assert kinds(now, "missing") == [(1, 15)]  # the tier keeps 90 days: this deletion was not retention
    later = trail.verify(now_ms=int(time.time() * 1000) + 91 * DAY)
    assert later.intact, later.as_json()
    assert later.chains[0].removed_by_retention == 15
    assert later.chains[0].verified == 15


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
