"""Event ids: UUIDv7 (RFC 9562), time-ordered so they sort like their events and index well."""

from __future__ import annotations

import os
import threading
import time

_lock = threading.Lock()
_last_ms = 0
_sequence = 0
_SEQUENCE_MAX = 0xFFF  # the 12-bit rand_a field doubles as a per-millisecond counter


def uuid7(unix_ms: int | None = None) -> str:
    """Return a new UUIDv7 as its canonical 36-character string.

    Ids from one process are strictly increasing, even within one millisecond or when
    the wall clock steps back (RFC 9562 section 6.2, method 1: a counter in ``rand_a``).

    >>> len(uuid7())
    36
    """
    global _last_ms, _sequence  # noqa: PLW0603 - process-wide monotonic state, guarded by _lock
    ms = time.time_ns() // 1_000_000 if unix_ms is None else unix_ms
    random_bits = int.from_bytes(os.urandom(10), "big")
    with _lock:
        if ms <= _last_ms:
            ms = _last_ms
            _sequence += 1
            if _sequence > _SEQUENCE_MAX:
                ms += 1
                _sequence = 0
        else:
            # start low in the counter space so a burst within this millisecond has room
            _sequence = (random_bits >> 72) & 0x1FF
        _last_ms = ms
        sequence = _sequence
    value = (
        (ms & 0xFFFF_FFFF_FFFF) << 80
        | 0x7 << 76
        | sequence << 64
        | 0b10 << 62
        | (random_bits & 0x3FFF_FFFF_FFFF_FFFF)
    )
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def uuid7_unix_ms(event_id: str) -> int:
    """The millisecond timestamp embedded in a UUIDv7 string."""
    return int(event_id.replace("-", "")[:12], 16)
