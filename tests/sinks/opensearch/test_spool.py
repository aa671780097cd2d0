"""The disk spool: framing, replay order, damage, adoption across processes, fork, size cap, fsync."""

from __future__ import annotations

import fcntl
import os
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_middleware.errors import AuditError
from audit_middleware.sinks.opensearch.spool import Spool, SpoolClosedError, SpooledBatch, SpoolFullError

ROOT = Path(__file__).resolve().parent.parent
HEADER = 16  # magic + first-write ms
FRAME = 8  # u32 length + u32 crc32

# One 50-byte record fills a 100-byte segment (16 + 8 + 50 = 74): one record per segment.
RECORD = b"x" * 50
RECORD_ON_DISK = HEADER + FRAME + len(RECORD)


def docs(count: int, tag: str = "r") -> list[bytes]:
    return [f'{{"tag": "{tag}", "n": {n}}}'.encode() for n in range(count)]


def drain(spool: Spool, **limits: int) -> list[bytes]:
    """Replay everything (acknowledging each batch) and return the records in order."""
    out: list[bytes] = []
    for batch in spool.replay(**limits):
        out.extend(batch.records)
        spool.ack(batch.segment_id, len(batch.records))
    return out


def owner_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def segment_files(root: Path) -> list[Path]:
    return sorted(root.glob("*/seg-*.log"))


def run_child(code: str, *args: str, **popen: object) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(  # type: ignore[call-overload,no-any-return]
        [sys.executable, "-c", textwrap.dedent(code), *args], env=env, cwd=ROOT, **popen
    )


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def make_spool(spool_dir: Path) -> Iterator[Callable[..., Spool]]:
    """Spools in the test's directory, closed at the end."""
    made: list[Spool] = []

    def make(**options: object) -> Spool:
        spool = Spool(spool_dir, **options)  # type: ignore[arg-type]
        made.append(spool)
        return spool

    yield make
    for spool in made:
        spool.close()


@pytest.fixture
def fsynced_files(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Inodes of regular files passed to os.fsync (directory fsyncs are left out)."""
    calls: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode):
            calls.append(info.st_ino)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    return calls


# -- round trip, order, rotation --------------------------------------------------------


def test_round_trip_deletes_acknowledged_segments(make_spool: Callable[..., Spool], spool_dir: Path) -> None:
    """Appended records replay in order; acknowledging them deletes the files; close removes the dir."""
    spool = make_spool()
    first, second = docs(3, "a"), docs(2, "b")
    segment_id = spool.append(first)
    assert spool.append(second) == segment_id
    assert len(segment_files(spool_dir)) == 1
    spool.seal_active()
    assert drain(spool) == first + second
    assert segment_files(spool_dir) == []
    stats = spool.stats()
    assert (stats.records, stats.bytes, stats.segments, stats.oldest_unix_ms) == (0, 0, 0, None)
    spool.close()
    assert list(spool_dir.iterdir()) == []


def test_rotation_by_size_and_oldest_first_across_segments(
    make_spool: Callable[..., Spool], spool_dir: Path
) -> None:
    """Segments rotate at segment_bytes; replay walks them oldest first, each batch from one segment."""
    spool = make_spool(segment_bytes=200)
    records = docs(30)
    for record in records:
        spool.append([record])
    spool.seal_active()
    files = segment_files(spool_dir)
    assert len(files) >= 4
    assert all(f.stat().st_size <= 200 for f in files)
    batches = list(_acking(spool, spool.replay(limit_records=3)))
    assert [r for b in batches for r in b.records] == records
    assert all(len(b.records) <= 3 for b in batches)
    ids = [b.segment_id for b in batches]
    assert ids == sorted(ids)  # 20-digit counters sort as text
    assert len(set(ids)) == len(files)


def _acking(spool: Spool, batches: Iterator[SpooledBatch]) -> Iterator[SpooledBatch]:
    for batch in batches:
        yield batch
        spool.ack(batch.segment_id, len(batch.records))


def test_limit_bytes_splits_batches(make_spool: Callable[..., Spool]) -> None:
    """A batch stays within limit_bytes of payload but always holds at least one record."""
    spool = make_spool()
    records = [b"a" * 40, b"b" * 40, b"c" * 100, b"d" * 10]
    spool.append(records)
    spool.seal_active()
    sizes = [[len(r) for r in b.records] for b in _acking(spool, spool.replay(limit_bytes=90))]
    assert sizes == [[40, 40], [100], [10]]


def test_active_segment_is_replayed_only_once_sealed(make_spool: Callable[..., Spool]) -> None:
    """replay() leaves the segment being written alone until seal_active()."""
    spool = make_spool()
    spool.append(docs(2))
    assert drain(spool) == []
    assert spool.stats().records == 2
    spool.seal_active()
    assert drain(spool) == docs(2)


def test_unacknowledged_batch_ends_replay_and_comes_back(make_spool: Callable[..., Spool]) -> None:
    """A batch not acknowledged stops the replay; the next replay yields it again, then the rest."""
    spool = make_spool()
    records = docs(6)
    spool.append(records)
    spool.seal_active()
    replay = spool.replay(limit_records=2)
    assert next(replay).records == records[:2]
    assert list(replay) == []  # not acknowledged: stop here
    assert drain(spool, limit_records=2) == records


def test_partial_ack_resumes_after_the_acknowledged_records(make_spool: Callable[..., Spool]) -> None:
    """ack(count) covers the batch's leading records; the next replay starts after them."""
    spool = make_spool()
    records = docs(5)
    spool.append(records)
    spool.seal_active()
    batch = next(iter(spool.replay()))
    spool.ack(batch.segment_id, 2)
    assert spool.stats().records == 3
    assert drain(spool) == records[2:]
    assert spool.stats().segments == 0


def test_two_replays_in_one_process_do_not_share_a_segment(make_spool: Callable[..., Spool]) -> None:
    """While one replay reads a segment, a second replay skips it."""
    spool = make_spool()
    spool.append(docs(4))
    spool.seal_active()
    first = spool.replay(limit_records=2)
    assert len(next(first).records) == 2
    assert list(spool.replay()) == []
    first.close()
    assert drain(spool) == docs(4)


def test_stats_oldest_unix_ms_tracks_the_oldest_pending_write(make_spool: Callable[..., Spool]) -> None:
    """oldest_unix_ms is the first-write time of the oldest unacknowledged segment."""
    spool = make_spool(segment_bytes=100)
    assert spool.stats().oldest_unix_ms is None
    before = time.time_ns() // 1_000_000
    spool.append([RECORD])
    after = time.time_ns() // 1_000_000
    time.sleep(0.01)
    spool.append([RECORD])  # second segment, later
    oldest = spool.stats().oldest_unix_ms
    assert oldest is not None
    assert before <= oldest <= after
    spool.seal_active()
    batch = next(iter(spool.replay()))
    spool.ack(batch.segment_id, 1)
    newer = spool.stats().oldest_unix_ms
    assert newer is not None
    assert newer > after
    assert spool.stats().records == 1


# -- damage -----------------------------------------------------------------------------


def _closed_spool_file(spool_dir: Path, records: list[bytes]) -> Path:
    """Write records (one append each) with a Spool that is then closed: an orphan segment."""
    spool = Spool(spool_dir)
    for record in records:
        spool.append([record])
    spool.close()
    (file,) = segment_files(spool_dir)
    return file


def test_torn_tail_yields_only_whole_records(make_spool: Callable[..., Spool], spool_dir: Path) -> None:
    """A record cut short by a crash is skipped and counted; the whole ones replay."""
    records = docs(5)
    file = _closed_spool_file(spool_dir, records)
    os.truncate(file, file.stat().st_size - 3)
    spool = make_spool()
    assert spool.adopt_orphans() == 4
    assert drain(spool) == records[:4]
    assert spool.stats().corrupt_records == 1
    assert list(spool_dir.iterdir()) == []


def test_torn_header_of_a_new_segment(make_spool: Callable[..., Spool], spool_dir: Path) -> None:
    """A segment cut inside its header holds no records and counts as damage."""
    file = _closed_spool_file(spool_dir, docs(1))
    os.truncate(file, 5)
    spool = make_spool()
    assert drain(spool) == []
    assert spool.stats().corrupt_records == 1
    assert segment_files(spool_dir) == []


def test_flipped_byte_is_skipped_by_crc_and_counted_once(
    make_spool: Callable[..., Spool], spool_dir: Path
) -> None:
    """A record whose payload changed fails its CRC; the others replay; re-reading does not recount."""
    spool = make_spool()
    records = docs(4)
    for record in records:
        spool.append([record])
    spool.seal_active()
    (file,) = segment_files(spool_dir)
    data = bytearray(file.read_bytes())
    second_payload = HEADER + FRAME + len(records[0]) + FRAME
    data[second_payload + 3] ^= 0x01
    file.write_bytes(bytes(data))
    first = next(iter(spool.replay()))
    assert first.records == [records[0], records[2], records[3]]
    assert spool.stats().corrupt_records == 1
    assert drain(spool) == [records[0], records[2], records[3]]  # not acked before: yielded again
    assert spool.stats().corrupt_records == 1
    assert spool.stats().segments == 0


def test_zero_filled_tail_is_not_read_as_records(make_spool: Callable[..., Spool], spool_dir: Path) -> None:
    """Zeros after the last record (a file system's reaction to a power cut) are damage, not empty records."""
    records = docs(3)
    file = _closed_spool_file(spool_dir, records)
    with file.open("ab") as stream:
        stream.write(bytes(4096))
    spool = make_spool()
    assert drain(spool) == records
    assert spool.stats().corrupt_records == 1


@settings(max_examples=40, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=40), min_size=1, max_size=12),
    where=st.floats(min_value=0, max_value=1, exclude_max=True),
    bit=st.integers(min_value=0, max_value=7),
)
def test_damage_never_yields_garbage(payloads: list[bytes], where: float, bit: int) -> None:
    """After any single flipped bit, replay yields an in-order subset of what was written."""
    with tempfile.TemporaryDirectory() as directory:
        file = _closed_spool_file(Path(directory), payloads)
        data = bytearray(file.read_bytes())
        data[int(where * len(data))] ^= 1 << bit
        file.write_bytes(bytes(data))
        with Spool(directory) as spool:
            replayed = drain(spool)
        remaining = iter(payloads)
        assert all(any(r == p for p in remaining) for r in replayed)  # a subsequence
        assert len(replayed) >= len(payloads) - 1  # a flip damages one record at most


@settings(max_examples=60, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=120), max_size=30),
    chunk=st.integers(min_value=1, max_value=5),
    limit=st.integers(min_value=1, max_value=7),
)
def test_arbitrary_payloads_round_trip(payloads: list[bytes], chunk: int, limit: int) -> None:
    """Any list of byte strings comes back exactly, in order, across rotations and batch sizes."""
    with tempfile.TemporaryDirectory() as directory, Spool(directory, segment_bytes=256) as spool:
        for start in range(0, len(payloads), chunk):
            spool.append(payloads[start : start + chunk])
        spool.seal_active()
        assert drain(spool, limit_records=limit) == payloads
        assert spool.stats().records == 0
        assert spool.stats().bytes == 0


# -- adoption across processes ------------------------------------------------------------

WRITE_AND_DIE = """
    import os, signal, sys
    from audit_middleware.sinks.opensearch.spool import Spool
    spool = Spool(sys.argv[1], segment_bytes=int(sys.argv[3]))
    for n in range(int(sys.argv[2])):
        spool.append([('{"tag": "r", "n": %d}' % n).encode()], durable=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""

WRITE_AND_WAIT = """
    import sys, time
    from audit_middleware.sinks.opensearch.spool import Spool
    spool = Spool(sys.argv[1])
    spool.append([('{"tag": "r", "n": %d}' % n).encode() for n in range(int(sys.argv[2]))], durable=True)
    print("ready", flush=True)
    time.sleep(60)
"""

REPLAY_CONCURRENTLY = """
    import pathlib, sys, time
    from audit_middleware.sinks.opensearch.spool import Spool
    root, go, out = sys.argv[1:4]
    spool = Spool(root)
    print("ready", flush=True)
    while not pathlib.Path(go).exists():
        time.sleep(0.002)
    with open(out, "wb") as stream:
        for _ in range(3):
            for batch in spool.replay(limit_records=7):
                stream.write(b"".join(record + b"\\n" for record in batch.records))
                stream.flush()
                spool.ack(batch.segment_id, len(batch.records))
                time.sleep(0.001)
    spool.close()
"""


def test_crashed_process_spool_is_adopted(make_spool: Callable[..., Spool], spool_dir: Path) -> None:
    """After SIGKILL, another Spool adopts the dead process's segments and replays exactly its records."""
    count = 25
    child = run_child(WRITE_AND_DIE, str(spool_dir), str(count), "300")
    assert child.wait(timeout=20) == -signal.SIGKILL
    assert len(segment_files(spool_dir)) > 1
    spool = make_spool()
    assert spool.adopt_orphans() == count
    assert spool.stats().records == count
    assert drain(spool, limit_records=4) == docs(count)
    assert owner_dirs(spool_dir) == []  # replayed, acked, removed


def test_live_process_spool_is_not_adopted(make_spool: Callable[..., Spool], spool_dir: Path) -> None:
    """A running process's owner dir is left alone; once it is gone, its records are adopted."""
    child = run_child(WRITE_AND_WAIT, str(spool_dir), "5", stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"ready"
        (live_file,) = segment_files(spool_dir)
        before = live_file.read_bytes()
        spool = make_spool()
        assert spool.adopt_orphans() == 0
        assert drain(spool) == []
        assert live_file.read_bytes() == before
        assert spool.stats().segments == 0
    finally:
        child.terminate()
        child.wait(timeout=20)
        if child.stdout is not None:
            child.stdout.close()
    assert spool.adopt_orphans() == 5
    assert drain(spool) == docs(5)


def test_two_live_processes_never_replay_the_same_orphan(spool_dir: Path, tmp_path: Path) -> None:
    """Two processes replaying the same orphans at once share them out: each record exactly once."""
    expected: list[bytes] = []
    for owner in range(5):
        records = docs(40, tag=f"o{owner}")
        _write_and_close(spool_dir, records, segment_bytes=300)
        expected += records
    go = tmp_path / "go"
    outs = [tmp_path / "a.out", tmp_path / "b.out"]
    children = [
        run_child(REPLAY_CONCURRENTLY, str(spool_dir), str(go), str(out), stdout=subprocess.PIPE)
        for out in outs
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == b"ready"
        go.touch()
        assert [child.wait(timeout=20) for child in children] == [0, 0]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
            if child.stdout is not None:
                child.stdout.close()
    replayed = [line for out in outs for line in out.read_bytes().splitlines()]
    assert len(replayed) == len(set(replayed))
    assert sorted(replayed) == sorted(expected)
    assert owner_dirs(spool_dir) == []


def _write_and_close(spool_dir: Path, records: list[bytes], **options: int) -> None:
    with Spool(spool_dir, **options) as spool:  # type: ignore[arg-type]
        for record in records:
            spool.append([record])


def test_orphans_replay_in_owner_start_order(make_spool: Callable[..., Spool], spool_dir: Path) -> None:
    """Orphans replay by their owner's start time, then segment counter: oldest first."""
    first, second = docs(3, "first"), docs(3, "second")
    _write_and_close(spool_dir, first, segment_bytes=100)
    time.sleep(0.005)
    _write_and_close(spool_dir, second, segment_bytes=100)
    assert len(owner_dirs(spool_dir)) == 2
    spool = make_spool()
    spool.append(docs(1, "own"))
    spool.seal_active()
    assert drain(spool) == first + second + docs(1, "own")


def test_stale_staging_dir_is_cleaned(make_spool: Callable[..., Spool], spool_dir: Path) -> None:
    """A half-created owner dir (.tmp-) left by a crash is removed once stale; a fresh one is kept."""
    stale = spool_dir / ".tmp-host-1-1-ab"
    fresh = spool_dir / ".tmp-host-2-2-cd"
    for path in (stale, fresh):
        path.mkdir(parents=True)
        (path / "owner.lock").touch()
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    make_spool().adopt_orphans()
    assert not stale.exists()
    assert fresh.exists()


# -- fork -------------------------------------------------------------------------------


def test_forked_child_writes_to_a_new_owner_dir(make_spool: Callable[..., Spool], spool_dir: Path) -> None:
    """After os.fork() the child's appends go to its own owner dir; the parent's lock and files stay."""
    spool = make_spool()
    parent_id = spool.append(docs(2, "parent"), durable=True)
    parent_owner = parent_id.split("/")[0]
    (parent_file,) = segment_files(spool_dir)
    before = parent_file.read_bytes()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            child_id = spool.append(docs(1, "child"), durable=True)
            code = 3 if child_id.startswith(parent_owner) else 0
            spool.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert parent_file.read_bytes() == before
    assert len(owner_dirs(spool_dir)) == 2
    lock_fd = os.open(spool_dir / parent_owner / "owner.lock", os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the child did not release it
    finally:
        os.close(lock_fd)
    assert spool.append(docs(1, "after")).startswith(parent_owner)
    spool.seal_active()
    assert drain(spool) == docs(2, "parent") + docs(1, "after") + docs(1, "child")


# -- size cap ---------------------------------------------------------------------------


def _fill(spool: Spool, count: int = 4) -> None:
    for _ in range(count):
        spool.append([RECORD])


def test_block_waits_until_acks_free_space(make_spool: Callable[..., Spool]) -> None:
    """With "block", an append at the cap waits until a replay acknowledges records, then writes."""
    spool = make_spool(segment_bytes=100, max_bytes=4 * RECORD_ON_DISK)
    _fill(spool)

    def deliver_later() -> None:
        time.sleep(0.2)
        drain(spool)

    worker = threading.Thread(target=deliver_later)
    worker.start()
    started = time.monotonic()
    assert spool.append([RECORD])
    waited = time.monotonic() - started
    worker.join()
    assert waited >= 0.15
    stats = spool.stats()
    assert (stats.records, stats.dropped) == (1, 0)


def test_block_timeout_raises_spool_full(make_spool: Callable[..., Spool]) -> None:
    """With "block" and block_timeout, a full spool raises SpoolFullError and drops nothing."""
    spool = make_spool(segment_bytes=100, max_bytes=4 * RECORD_ON_DISK, block_timeout=0.1)
    _fill(spool)
    started = time.monotonic()
    with pytest.raises(SpoolFullError):
        spool.append([RECORD])
    assert time.monotonic() - started >= 0.1
    stats = spool.stats()
    assert (stats.records, stats.dropped) == (4, 0)
    assert isinstance(SpoolFullError("x"), AuditError)


def test_block_rejects_a_batch_larger_than_the_cap(make_spool: Callable[..., Spool]) -> None:
    """A batch that could never fit raises at once instead of waiting forever."""
    spool = make_spool(max_bytes=100)
    with pytest.raises(SpoolFullError):
        spool.append([b"y" * 200])
    assert spool.stats().records == 0


def test_close_wakes_a_blocked_append(make_spool: Callable[..., Spool]) -> None:
    """Closing the spool ends a blocked append with SpoolClosedError."""
    spool = make_spool(segment_bytes=100, max_bytes=4 * RECORD_ON_DISK)
    _fill(spool)
    errors: list[BaseException] = []

    def blocked() -> None:
        try:
            spool.append([RECORD])
        except AuditError as exc:
            errors.append(exc)

    worker = threading.Thread(target=blocked)
    worker.start()
    time.sleep(0.1)
    spool.close()
    worker.join(5)
    assert [type(e) for e in errors] == [SpoolClosedError]


def test_drop_new_discards_incoming_and_counts(make_spool: Callable[..., Spool]) -> None:
    """With "drop_new", records that do not fit are discarded and counted; the old ones stay."""
    spool = make_spool(segment_bytes=100, max_bytes=4 * RECORD_ON_DISK, on_full="drop_new")
    records = [bytes([65 + n]) * 50 for n in range(6)]
    ids = [spool.append([record]) for record in records]
    assert ids[4:] == ["", ""]
    stats = spool.stats()
    assert (stats.records, stats.dropped) == (4, 2)
    assert stats.bytes <= 4 * RECORD_ON_DISK
    spool.seal_active()
    assert drain(spool) == records[:4]


def test_drop_oldest_deletes_oldest_segments_and_counts(make_spool: Callable[..., Spool]) -> None:
    """With "drop_oldest", the oldest segments go to make room, and their records are counted."""
    spool = make_spool(segment_bytes=100, max_bytes=4 * RECORD_ON_DISK, on_full="drop_oldest")
    records = [bytes([65 + n]) * 50 for n in range(10)]
    for record in records:
        assert spool.append([record])
    stats = spool.stats()
    assert (stats.records, stats.dropped) == (4, 6)
    spool.seal_active()
    assert drain(spool) == records[6:]


def test_closed_spool_refuses_appends(make_spool: Callable[..., Spool], spool_dir: Path) -> None:
    """After close(), append raises and the unacknowledged segment stays on disk."""
    spool = make_spool()
    spool.append(docs(1))
    spool.close()
    with pytest.raises(SpoolClosedError):
        spool.append(docs(1))
    assert len(segment_files(spool_dir)) == 1


# -- fsync ------------------------------------------------------------------------------


def test_durable_append_is_fsynced_before_returning(
    make_spool: Callable[..., Spool], spool_dir: Path, fsynced_files: list[int]
) -> None:
    """append(durable=True) fsyncs the segment file before it returns, once per call."""
    spool = make_spool(fsync_interval=60)
    spool.append(docs(1), durable=True)
    (file,) = segment_files(spool_dir)
    assert fsynced_files == [file.stat().st_ino]
    spool.append(docs(1), durable=True)
    assert fsynced_files == [file.stat().st_ino] * 2


def test_group_commit_defers_fsync_for_plain_appends(
    make_spool: Callable[..., Spool], fsynced_files: list[int]
) -> None:
    """Plain appends do not fsync inline; one deferred fsync covers them all after fsync_interval."""
    spool = make_spool(fsync_interval=0.5)
    for record in docs(50):
        spool.append([record])
    assert fsynced_files == []
    deadline = time.monotonic() + 5
    while not fsynced_files and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(fsynced_files) == 1
    time.sleep(0.4)
    assert len(fsynced_files) == 1  # nothing new written: nothing more to sync


def test_group_commit_fsyncs_at_most_every_interval(
    make_spool: Callable[..., Spool], fsynced_files: list[int]
) -> None:
    """Under a steady stream of plain appends, fsyncs happen at most once per fsync_interval."""
    spool = make_spool(fsync_interval=0.1)
    started = time.monotonic()
    while time.monotonic() - started < 0.55:
        spool.append(docs(1))
        time.sleep(0.002)
    elapsed = time.monotonic() - started
    assert 1 <= len(fsynced_files) <= elapsed / 0.1 + 1


def test_sync_fsyncs_pending_appends(make_spool: Callable[..., Spool], fsynced_files: list[int]) -> None:
    """sync() fsyncs what plain appends wrote, and does nothing when all is synced."""
    spool = make_spool(fsync_interval=60)
    spool.append(docs(3))
    spool.sync()
    assert len(fsynced_files) == 1
    spool.sync()
    assert len(fsynced_files) == 1
