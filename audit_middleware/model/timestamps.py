"""Time in audit records: milliseconds since the epoch, and their ECS text form.

Every conversion between ``datetime`` and epoch milliseconds in the package goes
through here, in integer arithmetic: ``datetime.timestamp() * 1000`` is a float and is
off by one millisecond for some values.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

__all__ = ["EPOCH", "format_timestamp", "from_unix_ms", "parse_timestamp", "unix_ms"]

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)


def unix_ms(moment: datetime, *, round_up: bool = False) -> int:
    """Milliseconds since the epoch of an aware ``datetime``; ``round_up`` rounds a partial ms up.

    A naive ``datetime`` is refused: its zone would be a guess.

    >>> unix_ms(datetime(1970, 1, 1, 0, 0, 1, 500, tzinfo=timezone.utc), round_up=True)
    1001
    """
    if moment.tzinfo is None:
        raise ValueError("times must be timezone-aware (UTC)")
    if round_up:
        return -(-(moment - EPOCH) // _MS)
    return (moment - EPOCH) // _MS


def from_unix_ms(value: int) -> datetime:
    """The UTC ``datetime`` of epoch milliseconds."""
    return EPOCH + timedelta(milliseconds=value)


_last_second: tuple[int, str] = (0, "1970-01-01T00:00:00")
"""The last second formatted and its text: the records of a busy second share it (a
quarter of a document's cost was the ``datetime``). Replaced whole, so threads never
see half of it."""


def format_timestamp(value: int) -> str:
    """ISO 8601 in UTC with milliseconds and ``Z``, as ECS and OpenSearch expect.

    >>> format_timestamp(1_700_000_000_123)
    '2023-11-14T22:13:20.123Z'
    """
    global _last_second  # noqa: PLW0603 - a one-entry cache
    second, millisecond = divmod(value, 1000)
    cached = _last_second
    if cached[0] != second:
        moment = datetime.fromtimestamp(second, tz=timezone.utc)
        # isoformat, not strftime: glibc's %Y does not pad years before 1000 to four digits
        cached = _last_second = (second, moment.isoformat(timespec="seconds")[:19])
    return f"{cached[1]}.{millisecond:03d}Z"


def parse_timestamp(text: str) -> int:
    """Milliseconds since the epoch from an ISO 8601 timestamp (``Z`` or an offset; naive is UTC)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return unix_ms(moment)
