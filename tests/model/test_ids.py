"""Event ids: UUIDv7 format, ordering and embedded time."""

from __future__ import annotations

import re
import threading
import time
import uuid
from itertools import pairwise

from audit_middleware.model import ids
from audit_middleware.model.ids import uuid7

CANONICAL = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def uuid7_unix_ms(event_id: str) -> int:
    """The millisecond timestamp embedded in a UUIDv7 string (RFC 9562: its first 48 bits)."""
    return int(event_id.replace("-", "")[:12], 16)


def test_canonical_lowercase_format():
    """An id is the 36-character canonical lowercase UUID text."""
    value = uuid7()
    assert CANONICAL.match(value), value
    assert str(uuid.UUID(value)) == value


def test_version_and_variant_bits():
    """Every id carries version 7 and the RFC 9562 variant (0b10)."""
    for _ in range(1000):
        parsed = uuid.UUID(uuid7())
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert (parsed.int >> 62) & 0b11 == 0b10
        assert (parsed.int >> 76) & 0xF == 7


def test_strictly_increasing_in_one_thread():
    """100k ids made back to back in one thread sort strictly in creation order."""
    made = [uuid7() for _ in range(100_000)]
    assert all(a < b for a, b in pairwise(made))
    assert len(set(made)) == len(made)


def test_strictly_increasing_under_threads():
    """Ids made concurrently by several threads are unique and each thread's own are increasing."""
    per_thread: dict[int, list[str]] = {}
    start = threading.Barrier(8)

    def make(index: int) -> None:
        start.wait()
        per_thread[index] = [uuid7() for _ in range(20_000)]

    threads = [threading.Thread(target=make, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [value for made in per_thread.values() for value in made]
    assert len(everything) == 160_000
    assert len(set(everything)) == len(everything)
    for made in per_thread.values():
        assert all(a < b for a, b in pairwise(made))


def test_ids_made_under_threads_sort_like_a_global_sequence():
    """Ids taken under a shared lock in several threads increase in the order they were taken."""
    taken: list[str] = []
    lock = threading.Lock()

    def make() -> None:
        for _ in range(5_000):
            with lock:
                taken.append(uuid7())

    threads = [threading.Thread(target=make) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert taken == sorted(taken)
    assert len(set(taken)) == len(taken)


def test_embedded_milliseconds_match_the_clock(monkeypatch):
    """The 48-bit timestamp of a fresh id is the current Unix time in milliseconds."""
    # ids made by earlier tests with explicit (future) timestamps must not hold the clock back
    monkeypatch.setattr(ids, "_last_ms", 0)
    monkeypatch.setattr(ids, "_sequence", 0)
    before = time.time_ns() // 1_000_000
    value = uuid7()
    after = time.time_ns() // 1_000_000
    assert before <= uuid7_unix_ms(value) <= after


def test_given_milliseconds_are_embedded(monkeypatch):
    """An explicit timestamp later than any id made so far is embedded as given."""
    # the generator's state is put back afterwards, so later ids carry the real time
    monkeypatch.setattr(ids, "_last_ms", ids._last_ms)
    monkeypatch.setattr(ids, "_sequence", ids._sequence)
    future = max(time.time_ns() // 1_000_000, ids._last_ms) + 10_000_000
    assert uuid7_unix_ms(uuid7(future)) == future


def test_clock_stepping_back_keeps_order():
    """A timestamp earlier than the last id still yields a larger id (RFC 9562 counter)."""
    latest = uuid7()
    earlier = uuid7(uuid7_unix_ms(latest) - 60_000)
    assert earlier > latest


def test_random_bytes_of_a_forked_child_are_its_own() -> None:
    """A child forked after the pool was filled draws fresh bytes, never the parent's next ones."""
    import os  # noqa: PLC0415 - only this test forks

    from audit_middleware.model.ids import random_bytes  # noqa: PLC0415

    random_bytes(16)  # the pool is filled in the parent
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send what it draws, then leave at once
        os.write(write, random_bytes(32))
        os._exit(0)
    os.close(write)
    child = os.read(read, 64)
    os.close(read)
    os.waitpid(pid, 0)
    parent = random_bytes(32)
    assert len(child) == 32
    assert child != parent
