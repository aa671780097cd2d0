"""Retention on the real engine: both tiers roll over, are snapshotted, deleted, and restored.

The policies are accelerated (minutes instead of days) and built by the same code as
the real ones; ``RetentionScenario`` runs them in the background from the start of the
session, and these tests check its milestones (the session summary prints their times).
"""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from audit_middleware.cli import main
from tests.conftest import OPENSEARCH_URL, require_plugin

pytestmark = [pytest.mark.opensearch, pytest.mark.slow]

ISM_MINUTES = 12 * 60  # seconds: about 6 ISM job runs to deletion, with room for a busy machine


@pytest.fixture(autouse=True)
def _ism(opensearch):
    require_plugin(opensearch, "opensearch-index-management")


def test_setup_registers_the_snapshot_repository_and_policies(retention_run):
    """setup with a snapshot location registers the fs repository before the policies that use it."""
    steps = retention_run.milestones.wait("setup", 120)["steps"]
    assert steps[0].startswith(f"created    snapshot repository {retention_run.repository} (fs at ")
    assert [s.split()[1:3] for s in steps[1:3]] == [["ism", "policy"], ["ism", "policy"]]


def test_standard_tier_rolls_over_by_age(retention_run):
    """The standard stream rolls over once its write index is a minute old."""
    info = retention_run.milestones.wait("standard:rolled_over", ISM_MINUTES)
    assert len(info["backing"]) >= 2
    assert info["backing"][0] == retention_run.first["standard"]


def test_extended_tier_rolls_over_by_size(retention_run):
    """The extended stream (age limit one day) rolls over because its primary shard passed 50 kb."""
    info = retention_run.milestones.wait("extended:rolled_over", ISM_MINUTES)
    assert len(info["backing"]) >= 2
    conditions = (info["info"] or {}).get("conditions", {})
    if conditions:  # explain still shows the rollover step's conditions when it is read right after it
        size = conditions["min_primary_shard_size"]
        assert size["condition"] == "50kb"
        assert conditions["min_index_age"]["condition"] == "1d"


@pytest.mark.parametrize("tier", ["standard", "extended"])
def test_each_index_is_snapshotted_then_deleted(retention_run, opensearch, tier):
    """ISM snapshots the first backing index to the repository (SUCCESS), then deletes it."""
    deleted = retention_run.milestones.wait(f"{tier}:deleted", ISM_MINUTES)
    assert deleted["snapshot_taken"], "the index was deleted before its snapshot was seen"
    milestones = retention_run.milestones
    assert milestones.at(f"{tier}:snapshot") <= milestones.at(f"{tier}:deleted")
    snapshot = milestones.info[f"{tier}:snapshot"]["snapshot"]
    (stored,) = opensearch.snapshot.get(repository=retention_run.repository, snapshot=snapshot)["snapshots"]
    assert stored["indices"] == [retention_run.first[tier]]
    assert stored["state"] == "SUCCESS"


def test_restored_archive_is_searched_by_the_query_layer_only_when_asked(retention_run):
    """The deleted standard index comes back from its snapshot under restored-*, which the store reads
    with include_restored and the live trail never does."""
    info = retention_run.milestones.wait("standard:restored", ISM_MINUTES + 120)
    name = f"restored-{retention_run.first['standard'].removeprefix('.ds-')}"
    assert info["names"] == [name]
    assert info["restored_ids"] == sorted(event.id for event in retention_run.kept)
    assert info["live_ids"] == []
    assert info["restored_get"] is True


def test_archive_commands_list_restore_and_search_an_archive(retention_run):
    """`archive list` shows each snapshot and where it is restored; `archive restore` brings the
    extended index back; `search --include-restored` finds its records, plain `search` does not."""
    retention_run.milestones.wait("standard:restored", ISM_MINUTES + 120)
    snapshot = retention_run.milestones.wait("extended:snapshot", ISM_MINUTES)["snapshot"]
    retention_run.milestones.wait("extended:deleted", ISM_MINUTES)
    target = ["--url", OPENSEARCH_URL, "--prefix", retention_run.prefix]
    listed = CliRunner().invoke(main, ["archive", "list", *target, "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {row["index"]: row for row in json.loads(listed.output)}
    standard, extended = retention_run.first["standard"], retention_run.first["extended"]
    assert rows[standard]["restored_as"] == f"restored-{standard.removeprefix('.ds-')}"
    assert rows[extended]["restored_as"] is None
    assert rows[extended]["state"] == "SUCCESS"
    restored = CliRunner().invoke(main, ["archive", "restore", snapshot, *target])
    assert restored.exit_code == 0, restored.output
    assert f"restored restored-{extended.removeprefix('.ds-')}" in restored.output
    again = CliRunner().invoke(main, ["archive", "restore", snapshot, *target])
    assert again.exit_code == 1
    assert "already restored" in again.stderr
    env = {"AUDIT_OPENSEARCH_URL": OPENSEARCH_URL, "AUDIT_OPENSEARCH_PREFIX": retention_run.prefix}
    search = ["search", "--store", "opensearch", "--tenant", "bigcorp", "--json", "--limit", "500"]
    found = CliRunner(env=env).invoke(main, [*search, "--include-restored"])
    assert found.exit_code == 0, found.output
    ids = {json.loads(line)["event"]["id"] for line in found.stdout.splitlines() if line.startswith("{")}
    assert {event.id for event in retention_run.bulky} <= ids
    live = CliRunner(env=env).invoke(main, search)
    assert (
        not {json.loads(line)["event"]["id"] for line in live.stdout.splitlines() if line.startswith("{")}
        & ids
    )
    dropped = CliRunner().invoke(
        main, ["archive", "drop", f"restored-{extended.removeprefix('.ds-')}", *target]
    )
    assert dropped.exit_code == 0, dropped.output


def test_a_replay_after_rollover_stores_no_second_copy(retention_run):
    """A dead process's spool replayed after the stream rolled over: with the check, each record
    stays stored once; without it, every replayed record gets a second copy in the new index."""
    info = retention_run.milestones.wait("replay", ISM_MINUTES)
    checked, unchecked = info["checked"], info["unchecked"]
    assert checked["duplicates"] == 0
    assert checked["stored_copies"] == checked["records"] == 10
    assert checked["already_stored"] == 10
    assert checked["indices"] == [retention_run.first["standard"]]
    assert unchecked["duplicates"] == unchecked["records"] == 10
    assert len(unchecked["indices"]) == 2


def test_status_shows_each_backing_index_ism_state(retention_run):
    """`audit-middleware status` lists every backing index with its policy and ISM state."""
    retention_run.milestones.wait("standard:initialized", ISM_MINUTES)
    result = CliRunner().invoke(main, ["status", "--url", OPENSEARCH_URL, "--prefix", retention_run.prefix])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("Retention:") and "backing indices" in line for line in lines)
    rows = [line for line in lines if f".ds-{retention_run.prefix}-" in line]
    assert rows, result.output
    assert any(f"{retention_run.prefix}-standard-retention: " in line for line in rows)
    # The scenario rolls its streams over meanwhile: a backing index ISM has not yet
    # picked up shows no policy for a moment, so the report is read until it settles.
    deadline = time.monotonic() + 60
    while True:
        report = json.loads(
            CliRunner()
            .invoke(main, ["status", "--url", OPENSEARCH_URL, "--prefix", retention_run.prefix, "--json"])
            .output
        )
        states = {row["index"]: row for row in report["indices"]}
        if all(row["policy"] for row in states.values()) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert all(row["policy"] == f"{row['stream']}-retention" for row in states.values())
    assert {row["state"] for row in states.values()} & {"hot", "archive"}
