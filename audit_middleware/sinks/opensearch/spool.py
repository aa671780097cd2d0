"""A crash-safe, append-only disk spool of opaque records, shared safely by several processes.

The shipper puts records here while OpenSearch is away (or before a durable request
returns) and replays them, oldest first, when it answers again. Records are opaque
bytes (one serialized JSON document each); the spool never looks inside them.

On-disk layout (a local file system; ``flock`` does not protect network mounts)::

    <directory>/
        <hostname>-<pid>-<unix_ms>-<random>/     one owner directory per live Spool
            owner.lock                             flock(LOCK_EX), held while the owner lives
            seg-<counter, 20 digits>-<random>.log  segments; higher counter = newer

A segment is a 16-byte header (magic ``AMSPOOL1``, then the u64 little-endian unix ms
of its first write) followed by frames ``[u32 length][u32 crc32][payload]``, all
little-endian. The CRC covers the length field and the payload, so a torn tail, a
flipped byte or a zero-filled tail (what some file systems leave after a power cut)
is skipped and counted in ``corrupt_records``, never returned as a record.

Adoption: the kernel drops a ``flock`` when its process dies, even on SIGKILL. An
owner directory whose ``owner.lock`` can be locked without waiting therefore belongs
to a dead process; the Spool that locks it keeps the lock while it replays the
segments and removes the directory once they are all acknowledged. A new owner
directory is built under a ``.tmp-`` name and renamed only after its lock is held,
so a live directory is never seen unlocked.

This module is long because the on-disk format, ownership and adoption, and replay are
one protocol: splitting them would spread the invariants a crash must keep over files.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import os
import re
import secrets
import socket
import struct
import threading
import time
import zlib
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple, get_args

from audit_middleware import logs
from audit_middleware.errors import AuditError, AuditValidationError
from audit_middleware.sinks.private import private_directory
from audit_middleware.sinks.worker import after_fork_in_child

__all__ = ["OnFull", "Spool", "SpoolClosedError", "SpoolFullError", "SpoolStats", "SpooledBatch"]


OnFull = Literal["block", "drop_new", "drop_oldest"]
"""What ``append`` does when the spool would exceed ``max_bytes``.

``"block"`` (the default) waits for acknowledgements to free space and never drops a
record; ``"drop_new"`` discards the incoming records; ``"drop_oldest"`` deletes the
oldest segments. Dropped records are counted in ``SpoolStats.dropped``.
"""

_MAGIC = b"AMSPOOL1"
_HEADER = struct.Struct("<8sQ")
_FRAME = struct.Struct("<II")
_LENGTH = struct.Struct("<I")
_MAX_RECORD = 0xFFFFFFFF
_LOCK_NAME = "owner.lock"
_TMP_PREFIX = ".tmp-"
_TMP_STALE_SECONDS = 60.0
_OWNER_NAME = re.compile(r"(?P<host>.+)-(?P<pid>\d+)-(?P<ms>\d+)-(?P<rand>[0-9a-f]+)")
_SEGMENT_NAME = re.compile(r"seg-(?P<counter>\d{20})-(?P<rand>[0-9a-f]+)\.log")


class _Default(enum.Enum):
    SPOOL = "the spool's own block_timeout"


class SpoolFullError(AuditError):
    """The spool is at ``max_bytes`` and stayed there for ``block_timeout`` (policy ``"block"``)."""


class SpoolClosedError(AuditError):
    """The spool was closed; its segments stay on disk for the next process."""


@dataclass(frozen=True)
class SpoolStats:
    """A snapshot of what this Spool holds (its own and adopted segments)."""

    bytes: int
    """Size of the segment files on disk."""
    records: int
    """Records written or adopted and not yet acknowledged."""
    segments: int
    oldest_unix_ms: int | None
    """First-write time of the oldest segment that still has unacknowledged records."""
    dropped: int
    """Records discarded by a drop policy; always 0 with ``on_full="block"``."""
    corrupt_records: int = 0
    """Damaged regions (torn tail, bad CRC) skipped while reading segments."""


@dataclass(frozen=True)
class SpooledBatch:
    """Records read back from one segment, oldest first: acknowledge them with ``Spool.ack``."""

    segment_id: str
    records: list[bytes]
    adopted: bool = False
    """From the spool of a dead process (which may have sent them before it died)."""


@dataclass(eq=False)
class _Owner:
    """An owner directory this Spool holds the lock of: its own, or one adopted from a dead process."""

    name: str
    path: Path
    unix_ms: int
    lock_fd: int
    own: bool
    segment_ids: set[str] = field(default_factory=set)


@dataclass(eq=False)
class _Segment:
    segment_id: str
    path: Path
    owner: _Owner
    counter: int
    first_unix_ms: int
    size: int = 0
    written: int = 0
    """Valid records in the file (exact after a full read)."""
    acked: int = 0
    sealed: bool = False
    checkpoints: dict[int, int] = field(default_factory=dict)
    """Record index -> byte offset of its frame; replay resumes from these."""
    scanned_to: int = 0
    """Bytes already checked for damage, so a re-read does not count it twice."""
    reader: object | None = None
    """The replay generator reading this segment, so two replays never share records."""

    @property
    def order(self) -> tuple[int, str, int]:
        return (self.owner.unix_ms, self.owner.name, self.counter)

    @property
    def pending(self) -> int:
        return max(self.written - self.acked, 0)


class _Frame(NamedTuple):
    """A valid record's payload span, or (``valid=False``) a damaged span that was skipped."""

    start: int
    end: int
    valid: bool


def _frame_crc(length_field: bytes | memoryview, payload: bytes | memoryview) -> int:
    return zlib.crc32(payload, zlib.crc32(length_field))


def _encode_records(records: Sequence[bytes]) -> bytes:
    """Frame records as ``[u32 length][u32 crc32][payload]`` each, ready for one write."""
    parts: list[bytes] = []
    for record in records:
        length = len(record)
        if length > _MAX_RECORD:
            raise AuditValidationError(f"a spool record is limited to {_MAX_RECORD} bytes, got {length}")
        length_field = _LENGTH.pack(length)
        parts.append(_FRAME.pack(length, _frame_crc(length_field, record)))
        parts.append(bytes(record))
    return b"".join(parts)


def _iter_frames(data: bytes, offset: int = 0) -> Iterator[_Frame]:
    """Walk frames from ``offset``; after damage, resynchronise on the next valid frame."""
    view = memoryview(data)
    end_of_data = len(data)
    position = offset
    damaged_from: int | None = None
    while position < end_of_data:
        if end_of_data - position >= _FRAME.size:
            length, crc = _FRAME.unpack_from(data, position)
            end = position + _FRAME.size + length
            if end <= end_of_data and crc == _frame_crc(
                view[position : position + _LENGTH.size], view[position + _FRAME.size : end]
            ):
                if damaged_from is not None:
                    yield _Frame(damaged_from, position, valid=False)
                    damaged_from = None
                yield _Frame(position + _FRAME.size, end, valid=True)
                position = end
                continue
        if damaged_from is None:
            damaged_from = position
        position += 1
    if damaged_from is not None:
        yield _Frame(damaged_from, end_of_data, valid=False)


def _read_header(data: bytes) -> tuple[int | None, int]:
    """(first-write unix ms, offset of the first frame); (None, 0) when the header is damaged."""
    if len(data) >= _HEADER.size:
        magic, unix_ms = _HEADER.unpack_from(data)
        if magic == _MAGIC:
            return int(unix_ms), _HEADER.size
    return None, 0


def _unix_ms() -> int:
    return time.time_ns() // 1_000_000


def _hostname() -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())[:64] or "host"


def _write_all(fd: int, data: bytes) -> None:
    # One write for the whole append; the loop only finishes a rare short write.
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock_owner_dir(path: Path) -> int | None:
    """Lock ``path/owner.lock`` without waiting: the fd if its owner is dead, else None."""
    lock_path = path / _LOCK_NAME
    try:
        # O_CREAT: a directory whose lock file is gone was being cleaned up by an adopter
        # that died; a live owner always has its lock file (it is renamed in with it).
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # Another adopter may have finished and unlinked the file between open and flock.
        if os.stat(lock_path).st_ino != os.fstat(fd).st_ino:
            raise FileNotFoundError(lock_path)
    except OSError:
        os.close(fd)
        return None
    return fd


def _remove_owner_dir(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (path / _LOCK_NAME).unlink()
    with contextlib.suppress(OSError):  # not empty (a foreign file) or already gone
        path.rmdir()


class Spool:
    """An append-only, crash-safe disk spool shared by the threads and processes of one host.

    >>> import tempfile
    >>> spool = Spool(tempfile.mkdtemp())
    >>> segment_id = spool.append([b'{"event": 1}', b'{"event": 2}'], durable=True)
    >>> spool.seal_active()
    >>> for batch in spool.replay():
    ...     spool.ack(batch.segment_id, len(batch.records))
    >>> spool.stats().records
    0
    >>> spool.close()

    Each process writes only into its own owner directory, created on first use (and
    afresh in a forked child). ``replay()`` yields the sealed segments of this Spool and
    those it adopted from dead processes, oldest first; the active segment joins them
    once sealed (by size, or by ``seal_active()``). Acknowledge each batch with ``ack``
    before asking for the next: a batch not fully acknowledged ends the replay, and the
    next ``replay()`` yields its unacknowledged records again. ``ack`` counts records
    from the front of the batch, so acknowledge a batch only when all of it is done
    (delivered or dead-lettered). Records are kept at least once: after a crash the
    unacknowledged ones of a segment are replayed again, so consumers must tolerate
    duplicates (OpenSearch ``op_type=create`` with ``_id = event.id`` does).

    Non-durable appends reach the page cache at once (they survive a crash of the
    process) and are fsynced as a group at most every ``fsync_interval`` seconds (they
    survive a power cut after that); ``append(durable=True)`` fsyncs before it returns.
    ``max_bytes`` bounds the files on disk; see ``OnFull`` for what happens at the cap.
    With ``"block"`` an append waits for space up to ``block_timeout`` seconds (None:
    for as long as it takes) and then raises ``SpoolFullError``; keep ``segment_bytes``
    well below ``max_bytes`` so that acknowledged segments can free space.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        segment_bytes: int = 8 << 20,
        max_bytes: int = 1 << 30,
        on_full: OnFull = "block",
        block_timeout: float | None = None,
        fsync_interval: float = 0.2,
    ) -> None:
        if segment_bytes <= 0 or max_bytes <= 0:
            raise AuditValidationError("segment_bytes and max_bytes must be positive")
        if on_full not in get_args(OnFull):
            raise AuditValidationError(f"on_full must be one of {get_args(OnFull)}, got {on_full!r}")
        if block_timeout is not None and block_timeout < 0:
            raise AuditValidationError("block_timeout must be None or >= 0")
        if fsync_interval < 0:
            raise AuditValidationError("fsync_interval must be >= 0")
        self.directory = Path(directory)
        private_directory(self.directory)
        self._segment_bytes = segment_bytes
        self._max_bytes = max_bytes
        self._on_full: OnFull = on_full
        self._block_timeout = block_timeout
        self._fsync_interval = fsync_interval
        self._closed = False
        self._start_fresh()
        after_fork_in_child(self._after_fork)

    def _start_fresh(self) -> None:
        """(Re)initialise the per-process state: at construction and in a forked child."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._sync_lock = threading.Lock()  # one fsync round at a time; appends go on meanwhile
        self._own: _Owner | None = None
        self._own_dir_fd: int | None = None
        self._adopted: dict[str, _Owner] = {}
        self._segments: dict[str, _Segment] = {}
        self._active: _Segment | None = None
        self._active_fd: int | None = None
        self._counter = 0
        self._bytes = 0
        self._dropped = 0
        self._corrupt = 0
        self._write_gen = 0  # appends written so far
        self._synced_gen = 0  # appends known to be fsynced
        self._dir_gen = 0  # segment files created (their directory entries need an fsync too)
        self._dir_synced_gen = 0
        self._last_sync = time.monotonic()
        self._flush_timer: threading.Timer | None = None

    def _after_fork(self) -> None:
        """In a forked child: let go of the parent's files and start a fresh owner lazily."""
        if self._pid == os.getpid():
            return
        inherited = [self._active_fd, self._own_dir_fd]
        inherited += [owner.lock_fd for owner in self._adopted.values()]
        if self._own is not None:
            inherited.append(self._own.lock_fd)
        for fd in inherited:
            # close only: flock(LOCK_UN) here would release the parent's lock (same open file)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._start_fresh()

    # -- writing ----------------------------------------------------------------------

    def append(
        self,
        records: Sequence[bytes],
        *,
        durable: bool = False,
        block_timeout: float | Literal[_Default.SPOOL] | None = _Default.SPOOL,
    ) -> str:
        """Write the records in one ``os.write``; return the id of the segment written to.

        Returns ``""`` when nothing was written: no records, or the records were dropped
        by the ``"drop_new"`` policy (counted in ``stats().dropped``). Raises
        ``SpoolFullError`` when ``"block"`` waited ``block_timeout`` (this call's, else the
        spool's) in vain, or when the batch alone is larger than ``max_bytes``; ``OSError``
        when the disk refuses the write.
        """
        self._after_fork()
        data = _encode_records(records)
        timeout = self._block_timeout if block_timeout is _Default.SPOOL else block_timeout
        with self._cond:
            self._check_open()
            if not records:
                segment_id = "" if self._active is None else self._active.segment_id
            elif self._make_room(len(data), len(records), timeout):
                segment_id = self._write(data, len(records)).segment_id
            else:
                return ""
            generation = self._write_gen
        if durable or self._fsync_interval == 0:
            self._sync_to(generation)
        elif records:
            self._schedule_flush()
        return segment_id

    def _check_open(self) -> None:
        if self._closed:
            raise SpoolClosedError(f"the spool in {self.directory} is closed")

    def _needed(self, size: int) -> int:
        """Bytes an append of ``size`` framed bytes adds, counting a new segment's header."""
        active = self._active
        starts_segment = active is None or active.size + size > self._segment_bytes
        return size + (_HEADER.size if starts_segment else 0)

    def _make_room(self, size: int, count: int, block_timeout: float | None) -> bool:
        """Apply the size cap (lock held); False when the records are to be dropped."""
        deadline = None if block_timeout is None else time.monotonic() + block_timeout
        while True:
            needed = self._needed(size)
            if self._bytes + needed <= self._max_bytes:
                return True
            if needed > self._max_bytes:  # can never fit
                if self._on_full == "block":
                    raise SpoolFullError(
                        f"a batch of {needed} bytes exceeds the spool cap of {self._max_bytes}"
                    )
                self._dropped += count
                return False
            if self._on_full == "drop_new":
                self._dropped += count
                return False
            if self._on_full == "drop_oldest":
                self._drop_oldest()
                continue
            # "block": make everything replayable, then wait for acknowledgements
            self._seal_active()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise SpoolFullError(
                    f"the spool in {self.directory} stayed at its cap of {self._max_bytes} bytes "
                    f"for {block_timeout} s"
                )
            self._cond.wait(remaining)
            self._check_open()

    def _drop_oldest(self) -> None:
        sealed = [segment for segment in self._segments.values() if segment.sealed]
        if not sealed:
            self._seal_active()  # the active segment is all there is: it goes too
            return
        oldest = min(sealed, key=lambda segment: segment.order)
        self._dropped += oldest.pending
        self._delete(oldest)

    def _write(self, data: bytes, count: int) -> _Segment:
        segment = self._active
        if segment is not None and segment.size + len(data) > self._segment_bytes:
            self._seal_active()
            segment = None
        if segment is None:
            segment = self._open_segment()
            data = _HEADER.pack(_MAGIC, segment.first_unix_ms) + data
        fd = self._active_fd
        assert fd is not None
        try:
            _write_all(fd, data)
        except OSError:
            # A partial frame may be on disk: seal the segment so nothing follows it;
            # replay skips the damage and counts what is really there.
            with contextlib.suppress(OSError):
                grown = os.fstat(fd).st_size - segment.size
                segment.size += grown
                self._bytes += grown
            self._seal_active()
            raise
        segment.size += len(data)
        segment.written += count
        self._bytes += len(data)
        self._write_gen += 1
        return segment

    def _open_segment(self) -> _Segment:
        owner = self._own_owner()
        self._counter += 1
        name = f"seg-{self._counter:020d}-{secrets.token_hex(4)}.log"
        path = owner.path / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        segment = _Segment(
            segment_id=f"{owner.name}/{name}",
            path=path,
            owner=owner,
            counter=self._counter,
            first_unix_ms=_unix_ms(),
            checkpoints={0: _HEADER.size},
            scanned_to=_HEADER.size,
        )
        self._register(segment)
        self._active, self._active_fd = segment, fd
        self._dir_gen += 1
        return segment

    def _own_owner(self) -> _Owner:
        """This process's owner directory, created (locked, then renamed in) on first use."""
        if self._own is not None:
            return self._own
        unix_ms = _unix_ms()
        name = f"{_hostname()}-{os.getpid()}-{unix_ms}-{secrets.token_hex(4)}"
        staging = self.directory / f"{_TMP_PREFIX}{name}"
        private_directory(self.directory)  # an operator may have removed it
        staging.mkdir(mode=0o700)
        lock_fd = os.open(staging / _LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path = self.directory / name
            staging.rename(path)
            self._own_dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            _fsync_directory(self.directory)
        except OSError:
            os.close(lock_fd)
            raise
        self._own = _Owner(name=name, path=path, unix_ms=unix_ms, lock_fd=lock_fd, own=True)
        return self._own

    def _register(self, segment: _Segment) -> None:
        self._segments[segment.segment_id] = segment
        segment.owner.segment_ids.add(segment.segment_id)
        self._bytes += segment.size

    def seal_active(self) -> None:
        """Close the segment being written (fsynced) so that ``replay()`` includes it."""
        self._after_fork()
        with self._cond:
            if not self._closed:
                self._seal_active()

    def _seal_active(self) -> None:
        segment, fd = self._active, self._active_fd
        if segment is None or fd is None:
            return
        try:
            self._fsync_all()
        finally:
            self._active = None
            self._active_fd = None
            os.close(fd)
            segment.sealed = True
        self._delete_if_done(segment)

    def _fsync_all(self) -> None:
        """fsync the active segment and, after new files, the owner directory (lock held)."""
        if self._active_fd is not None and self._synced_gen < self._write_gen:
            os.fsync(self._active_fd)
        self._synced_gen = self._write_gen
        if self._own_dir_fd is not None and self._dir_synced_gen < self._dir_gen:
            os.fsync(self._own_dir_fd)
        self._dir_synced_gen = self._dir_gen
        self._last_sync = time.monotonic()

    # -- durability -------------------------------------------------------------------

    def sync(self) -> None:
        """fsync every append made so far (and the directory entries of new segments)."""
        self._after_fork()
        with self._lock:
            if self._closed:
                return
            generation = self._write_gen
        self._sync_to(generation)

    def _sync_to(self, generation: int) -> None:
        """Make appends up to ``generation`` durable; one caller's fsync covers all waiting."""
        with self._sync_lock:
            with self._lock:
                if self._synced_gen >= generation and self._dir_synced_gen >= self._dir_gen:
                    return
                write_gen, dir_gen = self._write_gen, self._dir_gen
                # dup: a concurrent rotation may close the original (it fsyncs first)
                fds = []
                if self._active_fd is not None and self._synced_gen < write_gen:
                    fds.append(os.dup(self._active_fd))
                if self._own_dir_fd is not None and self._dir_synced_gen < dir_gen:
                    fds.append(os.dup(self._own_dir_fd))
            try:
                for fd in fds:
                    os.fsync(fd)
            finally:
                for fd in fds:
                    os.close(fd)
            with self._lock:
                self._synced_gen = max(self._synced_gen, write_gen)
                self._dir_synced_gen = max(self._dir_synced_gen, dir_gen)
                self._last_sync = time.monotonic()

    def _schedule_flush(self) -> None:
        """Group commit: one deferred fsync at most every ``fsync_interval`` seconds."""
        with self._lock:
            if self._flush_timer is not None or self._closed:
                return
            delay = max(0.0, self._last_sync + self._fsync_interval - time.monotonic())
            timer = self._flush_timer = threading.Timer(delay, self._deferred_flush)
            timer.daemon = True
        timer.start()

    def _deferred_flush(self) -> None:
        with self._lock:
            if self._closed or self._pid != os.getpid():
                return
            generation = self._write_gen
        try:
            self._sync_to(generation)
        except OSError as exc:
            logs.warn("audit spool fsync failed; retrying with the next append", error=str(exc))
        finally:
            with self._lock:
                self._flush_timer = None
                more = self._synced_gen < self._write_gen
        if more:
            self._schedule_flush()

    # -- reading back -----------------------------------------------------------------

    def ack(self, segment_id: str, count: int) -> None:
        """Mark ``count`` more records of a segment done; a sealed, fully acked segment is deleted.

        Unknown ids (a segment already deleted, or dropped by ``"drop_oldest"``) are ignored.
        """
        self._after_fork()
        if count < 0:
            raise AuditValidationError("ack count must be >= 0")
        with self._cond:
            segment = self._segments.get(segment_id)
            if segment is not None:
                segment.acked += count
                self._delete_if_done(segment)

    def _delete_if_done(self, segment: _Segment) -> None:
        if segment.sealed and segment.acked >= segment.written:
            self._delete(segment)

    def _delete(self, segment: _Segment) -> None:
        with contextlib.suppress(FileNotFoundError):
            segment.path.unlink()
        self._segments.pop(segment.segment_id, None)
        self._bytes -= segment.size
        owner = segment.owner
        owner.segment_ids.discard(segment.segment_id)
        if not owner.own and not owner.segment_ids:
            self._release(owner, remove=True)
        self._cond.notify_all()

    def _release(self, owner: _Owner, *, remove: bool) -> None:
        """Unlock an owner directory (removing it first when it is finished with); idempotent."""
        if owner.lock_fd < 0:
            return
        if remove:
            _remove_owner_dir(owner.path)
        with contextlib.suppress(OSError):
            fcntl.flock(owner.lock_fd, fcntl.LOCK_UN)  # also if a forked child still has it open
        os.close(owner.lock_fd)
        owner.lock_fd = -1
        if not owner.own:
            self._adopted.pop(owner.name, None)

    def replay(
        self, *, limit_records: int = 1000, limit_bytes: int = 5 << 20
    ) -> Generator[SpooledBatch, None, None]:
        """Yield unacknowledged records of sealed and adopted segments, oldest first.

        Adopts the spools of dead processes first (``adopt_orphans``). A batch holds at
        most ``limit_records`` records and ``limit_bytes`` payload bytes (at least one
        record) from one segment. Acknowledge each batch before taking the next; a batch
        left unacknowledged ends the replay. Damaged records are skipped and counted.
        Close the generator (or exhaust it) to let another replay read its segment.
        """
        if limit_records <= 0 or limit_bytes <= 0:
            raise AuditValidationError("limit_records and limit_bytes must be positive")
        return self._replay(limit_records, limit_bytes)

    def _replay(self, limit_records: int, limit_bytes: int) -> Generator[SpooledBatch, None, None]:
        self.adopt_orphans()
        with self._lock:
            candidates = sorted(
                (segment for segment in self._segments.values() if segment.sealed and segment.reader is None),
                key=lambda segment: segment.order,
            )
        token = object()
        for segment in candidates:
            with self._lock:
                if self._closed or segment.segment_id not in self._segments or segment.reader is not None:
                    continue
                segment.reader = token
            try:
                finished = yield from self._replay_segment(segment, limit_records, limit_bytes)
            finally:
                with self._lock:
                    if segment.reader is token:
                        segment.reader = None
            if not finished:
                return

    def _replay_segment(
        self, segment: _Segment, limit_records: int, limit_bytes: int
    ) -> Generator[SpooledBatch, None, bool]:
        """Yield one segment's unacknowledged records; False when a batch was not acknowledged."""
        with self._lock:
            index = max(i for i in segment.checkpoints if i <= segment.acked)
            offset = segment.checkpoints[index]
            skip = segment.acked - index  # a partial ack landed inside a batch
        try:
            data = segment.path.read_bytes()  # sealed segments never change
        except FileNotFoundError:
            return True  # dropped meanwhile
        batch: list[bytes] = []
        batch_bytes = 0
        for frame in _iter_frames(data, offset):
            if not frame.valid:
                self._count_damage(segment, frame)
                continue
            size = frame.end - frame.start
            if skip:
                skip -= 1
            elif batch and (len(batch) >= limit_records or batch_bytes + size > limit_bytes):
                if not (yield from self._hand_over(segment, batch, index, frame.start - _FRAME.size)):
                    return False
                batch, batch_bytes = [data[frame.start : frame.end]], size
            else:
                batch.append(data[frame.start : frame.end])
                batch_bytes += size
            index += 1
        if batch and not (yield from self._hand_over(segment, batch, index, len(data))):
            return False
        with self._cond:
            if segment.segment_id in self._segments:
                segment.written = index  # the true count, after any damage
                self._delete_if_done(segment)
        return True

    def _hand_over(
        self, segment: _Segment, batch: list[bytes], end_index: int, end_offset: int
    ) -> Generator[SpooledBatch, None, bool]:
        with self._lock:
            segment.checkpoints[end_index] = end_offset
        yield SpooledBatch(segment.segment_id, batch, adopted=not segment.owner.own)
        with self._lock:
            if segment.acked < end_index:
                return False
            keep = max(i for i in segment.checkpoints if i <= segment.acked)
            segment.checkpoints = {i: o for i, o in segment.checkpoints.items() if i >= keep}
        return True

    def _count_damage(self, segment: _Segment, frame: _Frame) -> None:
        with self._lock:
            if frame.start >= segment.scanned_to:
                self._corrupt += 1
                segment.scanned_to = frame.end

    # -- adoption ---------------------------------------------------------------------

    def adopt_orphans(self) -> int:
        """Take over the owner directories of dead processes; return how many records they hold.

        A directory is adopted only when its ``owner.lock`` can be flocked without
        waiting, which the kernel allows only once its owner has died; the lock is then
        held until the directory is replayed and removed (or this Spool closes).
        """
        self._after_fork()
        with self._lock:
            self._check_open()
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return 0
        candidates: list[tuple[int, str]] = []
        for entry in entries:
            if entry.name.startswith(_TMP_PREFIX):
                self._clean_staging(entry)
                continue
            match = _OWNER_NAME.fullmatch(entry.name)
            if match is None or not entry.is_dir(follow_symlinks=False):
                continue
            with self._lock:
                ours = entry.name in self._adopted or (self._own is not None and self._own.name == entry.name)
            if not ours:
                candidates.append((int(match["ms"]), entry.name))
        adopted = 0
        for unix_ms, name in sorted(candidates):
            path = self.directory / name
            lock_fd = _lock_owner_dir(path)
            if lock_fd is not None:
                adopted += self._adopt(
                    _Owner(name=name, path=path, unix_ms=unix_ms, lock_fd=lock_fd, own=False)
                )
        return adopted

    def _adopt(self, owner: _Owner) -> int:
        found: list[_Segment] = []
        damaged = 0
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(owner.path):
                match = _SEGMENT_NAME.fullmatch(entry.name)
                if match is not None:
                    segment, damage = self._read_orphan(owner, Path(entry.path), int(match["counter"]))
                    found.append(segment)
                    damaged += damage
        with self._cond:
            if self._closed:
                self._release(owner, remove=False)
                return 0
            self._adopted[owner.name] = owner
            self._corrupt += damaged
            for segment in sorted(found, key=lambda segment: segment.counter):
                self._register(segment)
                self._delete_if_done(segment)  # nothing readable in it
            if not owner.segment_ids:
                self._release(owner, remove=True)
            return sum(segment.written for segment in found)

    @staticmethod
    def _read_orphan(owner: _Owner, path: Path, counter: int) -> tuple[_Segment, int]:
        """A dead process's segment, with its records and damaged regions counted."""
        data = path.read_bytes()
        first_unix_ms, offset = _read_header(data)
        if first_unix_ms is None:
            first_unix_ms = os.stat(path).st_mtime_ns // 1_000_000
        written = damaged = 0
        for frame in _iter_frames(data, offset):
            if frame.valid:
                written += 1
            else:
                damaged += 1
        segment = _Segment(
            segment_id=f"{owner.name}/{path.name}",
            path=path,
            owner=owner,
            counter=counter,
            first_unix_ms=first_unix_ms,
            size=len(data),
            written=written,
            sealed=True,
            checkpoints={0: offset},
            scanned_to=len(data),
        )
        return segment, damaged

    def _clean_staging(self, entry: os.DirEntry[str]) -> None:
        """Remove a ``.tmp-`` directory left by a process that died while creating its owner dir."""
        try:
            if time.time() - entry.stat(follow_symlinks=False).st_mtime < _TMP_STALE_SECONDS:
                return  # probably being created right now
        except FileNotFoundError:
            return
        path = Path(entry.path)
        lock_fd = _lock_owner_dir(path)
        if lock_fd is not None:
            _remove_owner_dir(path)
            os.close(lock_fd)

    # -- state ------------------------------------------------------------------------

    def stats(self) -> SpoolStats:
        """Bytes, pending records and segments held, the oldest pending write time, and counters."""
        self._after_fork()
        with self._lock:
            segments = list(self._segments.values())
            pending = [segment for segment in segments if segment.pending]
            return SpoolStats(
                bytes=self._bytes,
                records=sum(segment.pending for segment in pending),
                segments=len(segments),
                oldest_unix_ms=min((segment.first_unix_ms for segment in pending), default=None),
                dropped=self._dropped,
                corrupt_records=self._corrupt,
            )

    def close(self) -> None:
        """fsync, then release every lock; unacknowledged segments stay for the next process."""
        self._after_fork()
        with self._cond:
            if self._closed:
                return
            self._closed = True
            if self._flush_timer is not None:
                self._flush_timer.cancel()
            try:
                self._seal_active()
            finally:
                if self._own_dir_fd is not None:
                    os.close(self._own_dir_fd)
                    self._own_dir_fd = None
                if self._own is not None:
                    self._release(self._own, remove=not self._own.segment_ids)
                    self._own = None
                for owner in list(self._adopted.values()):
                    self._release(owner, remove=False)
                self._segments.clear()
                self._bytes = 0
                self._cond.notify_all()  # blocked appends raise SpoolClosedError

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def inspect(directory: str | Path) -> SpoolStats:
    """What a spool directory holds, across every process's segments, without taking it over.

    Read-only (no locks, nothing adopted or deleted): for ``audit-middleware status``.
    Records already delivered from a segment that is still on disk are counted too.
    """
    root = Path(directory)
    total_bytes = records = segments = corrupt = 0
    oldest: int | None = None
    for segment in sorted(root.glob("*/seg-*.log")) if root.is_dir() else ():
        try:
            data = segment.read_bytes()
        except OSError:
            continue  # deleted while we looked: delivered
        segments += 1
        total_bytes += len(data)
        first_write, offset = _read_header(data)
        for frame in _iter_frames(data, offset):
            if frame.valid:
                records += 1
            else:
                corrupt += 1
        if first_write is not None:
            oldest = first_write if oldest is None else min(oldest, first_write)
    return SpoolStats(total_bytes, records, segments, oldest, 0, corrupt)
