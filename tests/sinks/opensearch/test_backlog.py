"""What waits on disk for OpenSearch: a real spool's records and a real dead-letter file, counted."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit_middleware import env
from audit_middleware.sinks.lastresort import LastResort
from audit_middleware.sinks.opensearch import backlog as backlog_module
from audit_middleware.sinks.opensearch.backlog import backlog
from audit_middleware.sinks.opensearch.deadletter import DeadLetterFile
from audit_middleware.sinks.opensearch.spool import Spool, inspect
from tests.query.conftest import make_event


def test_an_empty_state_directory_has_no_backlog(tmp_path: Path) -> None:
    """A state directory that does not exist yet reports zero of everything."""
    state = tmp_path / "never-used"
    assert backlog(state) == {
        "state_dir": str(state),
        "spool": {
            "records": 0,
            "bytes": 0,
            "segments": 0,
            "corrupt_records": 0,
            "oldest_undelivered_seconds": None,
        },
        "last_resort": {"records": 0, "directory": None},
        "dead_letters": 0,
    }
    assert not state.exists(), "reading the backlog creates nothing"


def test_spooled_records_and_dead_letters_are_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Spooled records and dead-letter lines are counted, with the age of the oldest record."""
    state = tmp_path / "state"
    spool = Spool(env.spool_dir(state))
    dead = DeadLetterFile(env.dead_letter_path(state))
    try:
        spool.append([b'{"event": 1}', b'{"event": 2}'], durable=True)
        spool.append([b'{"event": 3}'], durable=True)
        dead.write(b'{"event": 4}', reason="mapper_parsing_exception", status=400)
        dead.write(b"not json", reason="unparseable", status=None)
        on_disk = inspect(env.spool_dir(state))
        assert on_disk.oldest_unix_ms is not None
        now = on_disk.oldest_unix_ms / 1000 + 90.0
        monkeypatch.setattr(backlog_module.time, "time", lambda: now)
        report = backlog(state)
    finally:
        spool.close()
        dead.close()
    assert report["spool"]["records"] == 3
    assert report["spool"]["segments"] == 1
    assert report["spool"]["bytes"] == on_disk.bytes > 0
    assert report["spool"]["corrupt_records"] == 0
    assert report["spool"]["oldest_undelivered_seconds"] == 90.0
    assert report["dead_letters"] == 2


def test_reading_the_backlog_takes_nothing_over(tmp_path: Path) -> None:
    """The spool that is reported keeps its records: a replay afterwards still yields them all."""
    state = tmp_path / "state"
    with Spool(env.spool_dir(state)) as spool:
        spool.append([b"a", b"b"], durable=True)
        assert backlog(state)["spool"]["records"] == 2
        spool.seal_active()
        replayed = [record for batch in spool.replay() for record in batch.records]
    assert replayed == [b"a", b"b"]


def test_a_damaged_record_is_counted_as_corrupt(tmp_path: Path) -> None:
    """A record whose bytes changed on disk is reported as corrupt, not as a record."""
    state = tmp_path / "state"
    with Spool(env.spool_dir(state)) as spool:
        spool.append([b"first-record", b"second-record"], durable=True)
    [segment] = env.spool_dir(state).glob("*/seg-*.log")
    data = bytearray(segment.read_bytes())
    data[data.index(b"second-record")] ^= 0xFF
    segment.write_bytes(bytes(data))
    report = backlog(state)["spool"]
    assert (report["records"], report["corrupt_records"]) == (1, 1)


def test_only_dead_letters(tmp_path: Path) -> None:
    """Dead letters without any spool are still counted."""
    state = tmp_path / "state"
    with DeadLetterFile(env.dead_letter_path(state)) as dead:
        dead.write(b"{}", reason="x", status=400)
    report = backlog(state)
    assert report["dead_letters"] == 1
    assert report["spool"]["records"] == 0


def test_records_kept_by_the_last_resort_are_counted(tmp_path: Path) -> None:
    """What the last resort keeps for this destination is reported with its directory."""
    fallback = tmp_path / "fallback" / "opensearch-x"
    last = LastResort(fallback, name="the test cluster")
    last.keep([make_event("create"), make_event("delete")], OSError("spool full"))
    try:
        report = backlog(tmp_path / "state", fallback)
    finally:
        last.close()
    assert report["last_resort"] == {"records": 2, "directory": str(fallback)}
