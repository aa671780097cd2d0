"""Epoch milliseconds and their ECS text: exact integer conversions, rounding, and naive times refused."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit_middleware.model.timestamps import EPOCH, format_timestamp, from_unix_ms, parse_timestamp, unix_ms

UTC = timezone.utc
# The years datetime can hold, as epoch milliseconds.
MS_RANGE = st.integers(
    min_value=unix_ms(datetime(1, 1, 1, tzinfo=UTC)),
    max_value=unix_ms(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
)
AWARE = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=-7, minutes=-30)), timezone(timedelta(hours=14))]
    ),
)


def test_unix_ms_counts_from_the_epoch() -> None:
    """The epoch is 0; a second and a millisecond later is 1001."""
    assert unix_ms(EPOCH) == 0
    assert unix_ms(datetime(1970, 1, 1, 0, 0, 1, 1000, tzinfo=UTC)) == 1001
    assert unix_ms(datetime(2024, 11, 25, 16, 0, 0, 123000, tzinfo=UTC)) == 1_732_550_400_123


def test_an_offset_names_the_same_instant() -> None:
    """A time with an offset converts to the same milliseconds as its UTC equivalent."""
    paris = timezone(timedelta(hours=1))
    assert unix_ms(datetime(2024, 11, 25, 17, 0, 0, 123000, tzinfo=paris)) == 1_732_550_400_123


def test_a_partial_millisecond_rounds_down_unless_asked_up() -> None:
    """Microseconds below a whole millisecond are dropped, or rounded up with round_up=True."""
    moment = datetime(1970, 1, 1, 0, 0, 1, 500, tzinfo=UTC)
    assert unix_ms(moment) == 1000
    assert unix_ms(moment, round_up=True) == 1001


def test_round_up_leaves_a_whole_millisecond_alone() -> None:
    """A time on a millisecond boundary is the same either way."""
    moment = datetime(2024, 1, 1, 0, 0, 0, 7000, tzinfo=UTC)
    assert unix_ms(moment) == unix_ms(moment, round_up=True)


def test_before_the_epoch_rounds_towards_earlier() -> None:
    """Half a millisecond before the epoch is -1 rounded down and 0 rounded up."""
    moment = EPOCH - timedelta(microseconds=500)
    assert unix_ms(moment) == -1
    assert unix_ms(moment, round_up=True) == 0


def test_integer_arithmetic_where_floats_are_off_by_one() -> None:
    """A value that timestamp() * 1000 gets wrong (float error) is exact here."""
    moment = datetime(2004, 9, 13, 13, 12, 11, 442000, tzinfo=UTC)
    assert int(moment.timestamp() * 1000) != 1_095_081_131_442  # the float way loses a millisecond
    assert unix_ms(moment) == 1_095_081_131_442


def test_a_naive_datetime_is_refused() -> None:
    """Without a zone the instant would be a guess, so it raises ValueError."""
    with pytest.raises(ValueError, match="timezone-aware"):
        unix_ms(datetime(2024, 1, 1))


def test_from_unix_ms_is_utc() -> None:
    """Milliseconds become an aware UTC datetime, before and after the epoch."""
    assert from_unix_ms(1_732_550_400_123) == datetime(2024, 11, 25, 16, 0, 0, 123000, tzinfo=UTC)
    assert from_unix_ms(1_732_550_400_123).tzinfo is UTC
    assert from_unix_ms(-1) == datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (5, "1970-01-01T00:00:00.005Z"),
        (1_700_000_000_123, "2023-11-14T22:13:20.123Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (-30_610_224_000_001, "0999-12-31T23:59:59.999Z"),
        (-62_135_596_800_000, "0001-01-01T00:00:00.000Z"),
    ],
)
def test_format_timestamp_is_ecs_text(value: int, text: str) -> None:
    """UTC, four-digit years, exactly three fraction digits, and Z; before the epoch too."""
    assert format_timestamp(value) == text


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2023-11-14T22:13:20.123Z", 1_700_000_000_123),
        ("2023-11-14T23:13:20.123+01:00", 1_700_000_000_123),
        ("2023-11-14T22:13:20.123", 1_700_000_000_123),
        ("2023-11-14T22:13:20.123999Z", 1_700_000_000_123),
        ("2023-11-14T22:13:20Z", 1_700_000_000_000),
    ],
    ids=["z", "offset", "naive-is-utc", "microseconds-drop", "no-fraction"],
)
def test_parse_timestamp(text: str, value: int) -> None:
    """ISO text with Z or an offset parses to its instant; text without a zone is read as UTC."""
    assert parse_timestamp(text) == value


def test_parse_timestamp_refuses_text_that_is_no_time() -> None:
    """Garbage is a ValueError, not a wrong time."""
    with pytest.raises(ValueError):  # noqa: PT011 - datetime's own message
        parse_timestamp("yesterday")


@pytest.mark.parametrize(
    "value", [0, 1, 999, 1_732_550_400_123, 2_197_509_879_456, 1_095_080_331_442, 4_102_444_799_999]
)
def test_timestamp_parses_back_exactly(value: int) -> None:
    """format_timestamp and parse_timestamp are inverse to the millisecond (no float rounding)."""
    assert parse_timestamp(format_timestamp(value)) == value


@given(MS_RANGE)
def test_text_round_trip(value: int) -> None:
    """Any millisecond formats and parses back to itself."""
    assert parse_timestamp(format_timestamp(value)) == value


@given(MS_RANGE)
def test_datetime_round_trip(value: int) -> None:
    """from_unix_ms and unix_ms are inverse on whole milliseconds."""
    assert unix_ms(from_unix_ms(value)) == value


@given(AWARE)
def test_rounding_brackets_the_instant(moment: datetime) -> None:
    """Rounded down is at or before the instant, rounded up at or after it, at most 1 ms apart."""
    down, up = unix_ms(moment), unix_ms(moment, round_up=True)
    assert from_unix_ms(down) <= moment <= from_unix_ms(up)
    assert up - down == (0 if moment.microsecond % 1000 == 0 else 1)


@given(st.lists(st.integers(min_value=-62_135_596_799_999, max_value=253_402_300_798_999), max_size=20))
def test_the_formatted_second_is_reused_only_for_its_own_second(values: list[int]) -> None:
    """A run of timestamps, some in the same second and some not, each reads as its own instant."""
    for value in values:
        for near in (value, value + 1, value - 1, value + 1000):
            expected = (EPOCH + timedelta(milliseconds=near)).isoformat(timespec="milliseconds")
            assert format_timestamp(near) == expected.replace("+00:00", "Z")
