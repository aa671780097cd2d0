"""`audit-middleware verify`: its report, its exit status, stores and exported files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from audit_middleware.cli import main
from audit_middleware.model.checkpoints import generate_key_pem
from audit_middleware.opensearch.retention import RetentionTier
from tests.chain_support import ChainedStore, chained_store, documents, opensearch_trail
from tests.conftest import OPENSEARCH_URL


def _store(tmp_path: Path, records: int = 25) -> tuple[ChainedStore, Path]:
    store = chained_store(tmp_path)
    store.fill(records)
    public = tmp_path / "chain.pub"
    public.write_bytes(store.signer.public_pem())
    return store, public


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["verify", *args])


def test_a_clean_store_exits_0_and_says_intact(tmp_path: Path):
    """A clean store: exit status 0, the chain's range and counts, INTACT."""
    store, public = _store(tmp_path)
    result = run(
        "--store", f"sqlite:{store.path}", "--public-key", str(public), "--anchor", str(store.anchor)
    )
    assert result.exit_code == 0, result.output
    assert "verified   25 of 25 records, 3 checkpoints matched" in result.output
    assert "anchor     3 checkpoints anchored outside the store" in result.output
    assert result.output.rstrip().endswith("result     INTACT")


def test_a_tampered_store_exits_1_and_names_the_records(tmp_path: Path):
    """Modified and missing records are named in the output, and the exit status is 1."""
    store, public = _store(tmp_path)
    store.execute(
        "UPDATE events SET document = json_set(document, '$.audit.details.x', 1) WHERE seq = 4",
        "DELETE FROM events WHERE seq BETWEEN 10 AND 12",
    )
    result = run("--store", f"sqlite:{store.path}", "--public-key", str(public))
    assert result.exit_code == 1
    assert "  modified   seq 4 event " in result.output
    assert "(row 4): its content does not give its hash" in result.output
    assert "  missing    seq 10-12" in result.output
    assert "result     TAMPERED" in result.output


def test_json_output(tmp_path: Path):
    """--json prints one object a script can read: intact, chains, findings."""
    store, public = _store(tmp_path)
    store.execute("DELETE FROM events WHERE seq = 25", "DELETE FROM checkpoints WHERE last_seq = 25")
    result = run(
        "--store",
        f"sqlite:{store.path}",
        "--public-key",
        str(public),
        "--anchor",
        str(store.anchor),
        "--json",
    )
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["intact"] is False
    assert [f["kind"] for f in report["chains"][0]["findings"]] == ["truncated"]


def test_a_wrong_key_is_tampering_and_a_missing_store_is_exit_2(tmp_path: Path):
    """Checkpoints signed with another key fail (1); a store or key that cannot be read is 2."""
    store, _ = _store(tmp_path, 5)
    other = tmp_path / "other.pem"
    other.write_bytes(generate_key_pem())
    assert run("--store", f"sqlite:{store.path}", "--public-key", str(other)).exit_code == 1
    missing = run("--store", f"sqlite:{tmp_path / 'none.sqlite3'}")
    assert missing.exit_code == 2
    assert "no audit store" in missing.output
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("nope")
    assert run("--store", f"sqlite:{store.path}", "--public-key", str(garbage)).exit_code == 2


def test_without_a_key_it_warns(tmp_path: Path):
    """Without --public-key the signatures are not checked, and the output says so."""
    store, _ = _store(tmp_path, 5)
    result = run("--store", f"sqlite:{store.path}")
    assert result.exit_code == 0
    assert "checkpoint signatures not checked" in result.output


def test_a_file_of_documents_and_checkpoints_verifies_in_any_order(tmp_path: Path):
    """An NDJSON file of the stored documents, newest first, with the checkpoint lines: it verifies."""
    store, public = _store(tmp_path, 40)
    lines = [text for _, text in documents(store)][::-1] + store.anchor.read_text().splitlines()
    exported = tmp_path / "export.ndjson"
    exported.write_text("\n".join(lines) + "\n")
    result = run("--file", str(exported), "--public-key", str(public))
    assert result.exit_code == 0, result.output
    assert "verified   40 of 40 records" in result.output
    del lines[5]  # a record of the file dropped
    exported.write_text("\n".join(lines) + "\n")
    dropped = run("--file", str(exported), "--public-key", str(public))
    assert dropped.exit_code == 1
    assert "  missing    seq 35" in dropped.output


def test_store_and_file_together_are_refused(tmp_path: Path):
    """--store and --file name two trails: a usage error."""
    store, _ = _store(tmp_path, 2)
    result = run("--store", f"sqlite:{store.path}", "--file", str(store.anchor))
    assert result.exit_code == 2


@pytest.mark.opensearch
def test_verify_on_opensearch_names_retention_and_missing(opensearch, unique_name, tmp_path: Path):
    """`verify --store opensearch` prints the range ISM removed as retention (exit 0); the same gap in
    a tier whose delete age has not passed is missing (exit 1)."""
    aged = (RetentionTier("standard", 0, delete_after="1s"), RetentionTier("extended", 0, delete_after="1s"))
    for tiers, expected in ((aged, 0), (None, 1)):
        prefix = f"{unique_name}-{expected}"
        with opensearch_trail(opensearch, prefix, tmp_path / prefix, tiers=tiers) as trail:
            trail.ship(15)
            opensearch.indices.rollover(alias=trail.stream)
            trail.ship(15)
            oldest = trail.backing()[0]
            opensearch.indices.delete(index=oldest)
            trail.refresh()
            public = tmp_path / prefix / "chain.pub"
            public.write_bytes(trail.signer.public_pem())
            result = CliRunner().invoke(
                main,
                [
                    "verify",
                    "--store",
                    "opensearch",
                    "--public-key",
                    str(public),
                    "--anchor",
                    str(trail.anchor),
                ],
                env={"AUDIT_OPENSEARCH_URL": OPENSEARCH_URL, "AUDIT_OPENSEARCH_PREFIX": prefix},
            )
        assert result.exit_code == expected, result.output
        if expected == 0:
            assert f"  retention  seq 1-15: ISM deleted {oldest} after 1s" in result.output
            assert "result     INTACT" in result.output
        else:
            assert (
                "  missing    seq 1-15: no checkpoint older than the tier's delete age (90d)" in result.output
            )
