"""Identifiers: event ids (UUIDv7, RFC 9562: time-ordered, so they sort like their events and
index well) and the one grammar of the names apps choose (action ids, resource types)."""

from __future__ import annotations

import os
import re
import threading
import time

from audit_middleware.errors import AuditValidationError

_lock = threading.Lock()
_last_ms = 0
_sequence = 0
_SEQUENCE_MAX = 0xFFF  # the 12-bit rand_a field doubles as a per-millisecond counter
_POOL_SIZE = 65536
_pool = b""
_pool_at = 0


def random_bytes(count: int) -> bytes:
    """``count`` bytes from the OS's CSPRNG, drawn 64 KiB at a time (one ``getrandom`` call
    per about 2,500 records, not one per id); a forked child starts with a fresh pool, never
    its parent's.

    ``os.urandom`` releases the GIL, and a background thread that did waits for a busy
    request thread to hand it back, up to a switch interval (5 ms): with 4 KiB pools the
    refills were a fifth of the delivery worker's time in a uvicorn worker under load.
    """
    global _pool, _pool_at  # noqa: PLW0603 - the process's pool, guarded by _lock
    with _lock:
        end = _pool_at + count
        if end > len(_pool):
            _pool, _pool_at, end = os.urandom(max(_POOL_SIZE, count)), 0, count
        chunk = _pool[_pool_at:end]
        _pool_at = end
    return chunk


def _forget_pool() -> None:
    global _pool, _pool_at
    _pool, _pool_at = b"", 0


os.register_at_fork(after_in_child=_forget_pool)

IDENTIFIER = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
"""Action ids and resource types: 1-64 characters of a-z, 0-9, ``_``, ``.``, ``-``, starting with a letter."""


def check_identifier(value: object, what: str) -> str:
    """Return ``value`` if it is a valid identifier, else raise AuditValidationError naming ``what``.

    >>> check_identifier("ssh_key", "resource type")
    'ssh_key'
    """
    if not isinstance(value, str) or not IDENTIFIER.fullmatch(value):
        raise AuditValidationError(
            f"{what} {value!r} must be 1-64 chars of a-z, 0-9, '_', '.', '-' and start with a letter"
        )
    return value


def uuid7(unix_ms: int | None = None) -> str:
    """Return a new UUIDv7 as its canonical 36-character string.

    Ids from one process are strictly increasing, even within one millisecond or when
    the wall clock steps back (RFC 9562 section 6.2, method 1: a counter in ``rand_a``).

    >>> len(uuid7())
    36
    """
    global _last_ms, _sequence  # noqa: PLW0603 - process-wide monotonic state, guarded by _lock
    ms = time.time_ns() // 1_000_000 if unix_ms is None else unix_ms
    random_bits = int.from_bytes(random_bytes(10), "big")
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
