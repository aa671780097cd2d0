"""OpenSearchSink on a failing disk (durable records raise or fall back, none is lost silently), and the
chain's end checkpointed when the sink persists or closes."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from audit_middleware import AuditDeliveryError, configure, record
from audit_middleware.model.checkpoints import Checkpoint, KeyRing, Signer, generate_key_pem
from audit_middleware.opensearch.chains import checkpoints_stream
from audit_middleware.opensearch.connection import ConnectionSettings
from audit_middleware.query.verify_sources import OpenSearchSource, read_anchor
from audit_middleware.sinks.anchor import FileAnchor
from audit_middleware.sinks.chain import ChainPolicy
from audit_middleware.sinks.opensearch.shipper import ShipperOptions
from audit_middleware.sinks.opensearch.sink import OpenSearchSink
from audit_middleware.sinks.opensearch.spool import inspect
from tests.chain_support import findings, opensearch_trail
from tests.query.conftest import make_event
from tests.spool_support import spooled_documents, spooled_kinds
from tests.wsgi_support import request, simple_app

UNREACHABLE = ConnectionSettings(urls=("http://127.0.0.1:9",))
FAST_ROUNDS = ShipperOptions(backoff_base=0.01, backoff_max=0.05, flush_interval=0.05)
BLOB = "x" * 5000  # about 5 KB per record


def _wrote(fd: int) -> bool:
    """Write one block; False once the disk is full."""
    try:
        os.write(fd, b"\0" * 4096)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        return False
    return True


class SmallDisk:
    """A 512 KiB file system for the sink's state (tmpfs, as root), or, without the right to
    mount, a state directory that stops accepting writes once ``fill()`` is called."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mounted = False
        self.filler = root / "filler"

    def fill(self) -> None:
        """Leave (almost) no room: the next spool writes fail."""
        if self.mounted:
            fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                while _wrote(fd):
                    pass
            finally:
                os.close(fd)
        else:
            for directory in (self.root, *self.root.rglob("*")):
                if directory.is_dir():
                    directory.chmod(0o500)

    def free(self) -> None:
        """Make room again."""
        if self.mounted:
            self.filler.unlink()
        else:
            for directory in (self.root, *self.root.rglob("*")):
                if directory.is_dir():
                    directory.chmod(0o700)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """The state directory on a disk that can be filled."""
    root = tmp_path / "small"
    root.mkdir()
    disk = SmallDisk(root)
    if os.geteuid() == 0:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs", str(root)],
            capture_output=True,
            check=False,
        )
        disk.mounted = mounted.returncode == 0
        if not disk.mounted:
            pytest.skip(f"running as root but cannot mount a tmpfs: {mounted.stderr.decode()[:200]}")
    try:
        yield disk
    finally:
        if disk.mounted:
            subprocess.run(["umount", "-l", str(root)], check=False)
        else:
            disk.free()


def _sink(disk: SmallDisk, fallback: Path) -> OpenSearchSink:
    return OpenSearchSink(
        settings=UNREACHABLE,
        state_dir=disk.root,
        durable=True,
        durable_wait=0.2,
        fallback_dir=fallback,
        options=FAST_ROUNDS,
        shutdown_timeout=1.0,
    )


def _wait_for(condition: object, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_durable_explicit_records_raise_when_the_disk_is_full(small_disk: SmallDisk, tmp_path: Path) -> None:
    """On a full disk an explicit record() raises; every record() that returned is in the spool."""
    sink = _sink(small_disk, tmp_path / "fallback")
    configure(sink=sink)
    returned = raised = 0
    for number in range(400):
        if number == 50:
            small_disk.fill()
        try:
            record("update", details={"n": number, "blob": BLOB})
            returned += 1
        except AuditDeliveryError:
            raised += 1
    sink.close(timeout=1)
    assert returned == 50
    assert raised == 350
    assert inspect(small_disk.root / "spool").records == returned  # nothing acknowledged is missing
    assert sink.metrics.refused == raised


def test_durable_automatic_records_fall_back_and_are_replayed(small_disk: SmallDisk, tmp_path: Path) -> None:
    """A record finished by the middleware never raises into the server: after a bounded wait it goes
    to a private fallback file, counted, and moves into the spool when the disk has room again."""
    fallback = tmp_path / "fallback"
    sink = _sink(small_disk, fallback)
    configure(sink=sink)
    small_disk.fill()

    def handle(environ: dict[str, object]) -> None:
        record("update", details={"blob": BLOB})

    responses = [request(simple_app(status="200 OK", action=handle), "PUT", f"/pods/{n}") for n in range(20)]
    assert [response.code for response in responses] == [200] * 20
    assert sink.metrics.fallback == 20
    assert sink.fallback.stats().kept == 20
    (kept,) = fallback.glob("*.jsonl")
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE(fallback.stat().st_mode) == 0o700
    assert sink.status()["last_resort"]["kept"] == 20

    small_disk.free()
    _wait_for(lambda: sink.fallback.stats().replayed == 20)
    sink.close(timeout=1)
    assert spooled_kinds(small_disk.root / "spool") == (20, 1)  # and the chain's final checkpoint


def _plain_sink(state: Path) -> OpenSearchSink:
    return OpenSearchSink(
        settings=UNREACHABLE,
        state_dir=state,
        options=ShipperOptions(backoff_base=5.0, backoff_max=5.0),  # the shipper waits: records stay queued
        shutdown_timeout=0.5,
        install_signal_handlers=False,
    )


def test_persist_spools_the_queue_and_what_follows(tmp_path: Path) -> None:
    """persist() (what a signal handler calls) moves queued records to the spool at once, and later
    records go straight there: nothing is left in memory for a dying process to lose."""
    sink = _plain_sink(tmp_path / "state")
    try:
        for _ in range(30):
            sink.emit(make_event("create"))
        assert sink.persist()
        sink.emit(make_event("update"))
        assert sink.status()["queue_depth"] == 0
        assert spooled_kinds(tmp_path / "state" / "spool")[0] == 31
    finally:
        sink.close(timeout=0.5)


def test_persist_and_close_checkpoint_the_chain_end(tmp_path: Path) -> None:
    """Persist (a signal), each record after it, and close spool a final checkpoint after the records
    it covers, signed and anchored: the chain's end is never left unsigned."""
    signer = Signer.from_pem(generate_key_pem())
    anchor = tmp_path / "anchor.jsonl"
    sink = OpenSearchSink(
        settings=UNREACHABLE,
        state_dir=tmp_path / "state",
        options=ShipperOptions(backoff_base=5.0, backoff_max=5.0),
        shutdown_timeout=0.5,
        install_signal_handlers=False,
        chain=ChainPolicy(signer=signer, every=1000, anchor=FileAnchor(anchor)),
    )
    for _ in range(30):
        sink.emit(make_event("create"))
    sink.persist()
    sink.emit(make_event("update"))
    sink.close(timeout=0.5)
    documents = spooled_documents(tmp_path / "state" / "spool")
    checkpoints = [document["checkpoint"] for document in documents if "checkpoint" in document]
    ranges = [(checkpoint["first_seq"], checkpoint["last_seq"]) for checkpoint in checkpoints]
    assert ranges == [(1, 30), (31, 31)]  # none due (every=1000): persist and the late record made them
    assert "checkpoint" in documents[30]
    assert "checkpoint" in documents[-1]  # each after the records it covers
    keys = KeyRing.from_pem([signer.public_pem()])
    anchored = list(read_anchor(anchor))
    assert [(c.first_seq, c.last_seq) for c in anchored if isinstance(c, Checkpoint)] == ranges
    assert all(isinstance(c, Checkpoint) and keys.check(c) is None for c in anchored)


def test_close_without_new_records_adds_no_checkpoint(tmp_path: Path) -> None:
    """A chain whose end is checkpointed already gets no second, empty checkpoint at close."""
    sink = _plain_sink(tmp_path / "state")
    sink.emit(make_event("create"))
    sink.persist()
    sink.close(timeout=0.5)
    assert spooled_kinds(tmp_path / "state" / "spool") == (1, 1)


def test_a_record_after_close_is_kept_not_stranded(tmp_path: Path) -> None:
    """A record emitted after close() (a late thread) is kept on disk (the closed spool's last
    resort, which the next process moves into the spool), not in a queue nobody ships."""
    sink = _plain_sink(tmp_path / "state")
    sink.emit(make_event("create"))
    sink.close(timeout=0.5)
    sink.emit(make_event("update"))
    assert spooled_kinds(tmp_path / "state" / "spool") == (1, 1)  # the record and its chain's end
    assert sink.fallback.stats().kept == 1
    assert sink.status()["queue_depth"] == 0


@pytest.mark.opensearch
def test_close_signs_the_chain_end_on_the_node(opensearch, unique_name, tmp_path: Path) -> None:
    """Records, close: the last record is covered by a checkpoint (stream and anchor), so verify
    checks the chain to its end; dropping the newest records after close is then truncation."""
    with opensearch_trail(opensearch, unique_name, tmp_path) as trail:
        trail.ship(25)  # checkpoints every 10 records: 20 was the last periodic one
        clean = trail.verify()
        assert clean.intact, clean.as_json()
        (chain,) = clean.chains
        assert (chain.verified, chain.last_seq) == (25, 25)
        assert chain.checkpoints == 3  # 10, 20 and the final one at 25
        stored = OpenSearchSource(opensearch, unique_name).checkpoints()
        assert max(c.last_seq for c in stored if isinstance(c, Checkpoint)) == 25
        opensearch.delete_by_query(
            index=f"{unique_name}-*",
            body={"query": {"range": {"audit.chain.seq": {"gt": 21}}}},
            params={"refresh": "true"},
        )
        opensearch.delete_by_query(  # their checkpoint too: only the anchor still has it
            index=checkpoints_stream(unique_name),
            body={"query": {"range": {"checkpoint.last_seq": {"gt": 20}}}},
            params={"refresh": "true"},
        )
        trail.refresh()
        assert findings(trail.verify(), "truncated") == [(22, 25)]
