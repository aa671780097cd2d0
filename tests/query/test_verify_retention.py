"""What ISM may have removed, read from the real node: retention told from removal by anyone else."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from audit_middleware.opensearch.retention import default_tiers
from audit_middleware.query.verify import Finding, VerifyReport
from audit_middleware.query.verify_sources import OpenSearchSource
from tests.chain_support import Trail, findings, opensearch_trail
from tests.integration.layout import path_repo
from tests.query.conftest import DAY

pytestmark = pytest.mark.opensearch


def _rolled_over_trail(trail: Trail) -> str:
    """Two backing indices of 15 records each; the older one deleted as ISM deletes it. Returns its name."""
    trail.ship(15)
    trail.client.indices.rollover(alias=trail.stream)
    trail.ship(15)
    oldest = trail.backing()[0]
    trail.client.indices.delete(index=oldest)
    trail.refresh()
    return oldest


def _chain_findings(report: VerifyReport, kind: str) -> list[Finding]:
    return [finding for chain in report.chains for finding in chain.findings if finding.kind == kind]


def test_ism_retention_is_told_from_removal_on_the_node(opensearch, unique_name, tmp_path: Path):
    """The oldest backing index gone: missing while the tier's 90 days have not passed, retention after."""
    with opensearch_trail(opensearch, unique_name, tmp_path) as trail:
        oldest = _rolled_over_trail(trail)
        rules = OpenSearchSource(opensearch, unique_name).retention(int(time.time() * 1000))[trail.stream]
        assert (rules.gone, rules.delete_age, rules.oldest_index) == ((oldest,), "90d", trail.backing()[0])
        now = trail.verify()
        (missing,) = _chain_findings(now, "missing")
        assert (missing.first_seq, missing.last_seq) == (1, 15)
        assert "delete age (90d)" in missing.detail
        later = trail.verify(now_ms=int(time.time() * 1000) + 91 * DAY)
        assert later.intact, later.as_json()
        (retention,) = _chain_findings(later, "retention")
        assert (retention.first_seq, retention.last_seq) == (1, 15)
        assert oldest in retention.detail
        assert (later.chains[0].removed_by_retention, later.chains[0].verified) == (15, 15)


def test_a_record_deleted_from_an_index_still_there_is_missing_on_the_node(
    opensearch, unique_name, tmp_path: Path
):
    """However old, a chain start deleted from a backing index that exists was not ISM's doing."""
    with opensearch_trail(opensearch, unique_name, tmp_path) as trail:
        trail.ship(15)
        opensearch.delete_by_query(
            index=trail.stream,
            body={"query": {"range": {"audit.chain.seq": {"lte": 3}}}},
            params={"refresh": "true"},
        )
        report = trail.verify(now_ms=int(time.time() * 1000) + 91 * DAY)
        assert findings(report, "missing") == [(1, 3)]
        assert findings(report, "retention") == []


def test_an_archiving_tier_needs_the_snapshot_on_the_node(opensearch, unique_name, tmp_path: Path):
    """Where the tier snapshots before deleting, a gone index is retention only while a snapshot holds it."""
    repository = f"{unique_name}-archive"
    tiers = default_tiers(snapshot_repository=repository)
    location = str(path_repo(opensearch) / unique_name)
    with opensearch_trail(
        opensearch, unique_name, tmp_path, tiers=tiers, snapshot_location=location
    ) as trail:
        trail.ship(15)
        trail.client.indices.rollover(alias=trail.stream)
        trail.ship(15)
        oldest = trail.backing()[0]
        opensearch.snapshot.create(  # what ISM's snapshot action does before its delete
            repository=repository,
            snapshot=f"{oldest}-1",
            body={"indices": oldest, "include_global_state": False},
            params={"wait_for_completion": "true"},
        )
        opensearch.indices.delete(index=oldest)
        trail.refresh()
        later = int(time.time() * 1000) + 91 * DAY
        archived = trail.verify(now_ms=later)
        assert archived.intact, archived.as_json()
        assert repository in _chain_findings(archived, "retention")[0].detail
        opensearch.snapshot.delete(repository=repository, snapshot=f"{oldest}-1")
        unarchived = trail.verify(now_ms=later)
        (missing,) = _chain_findings(unarchived, "missing")
        assert (missing.first_seq, missing.last_seq) == (1, 15)
        assert f"{oldest} is gone and not in a snapshot of {repository}" in missing.detail
        opensearch.snapshot.delete_repository(repository=repository)
