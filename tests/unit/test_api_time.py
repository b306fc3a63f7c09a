"""Buckets of the API: local calendar alignment, DST days, bounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from api.errors import ApiError
from api.timeq import (
    MAX_POINTS,
    MAX_RANGE_DAYS,
    make_buckets,
    parse_instant,
    parse_tz,
)

PARIS = ZoneInfo("Europe/Paris")


def _b(start: str, end: str, bucket: str, tz: ZoneInfo = PARIS) -> list[float]:
    b = make_buckets(parse_instant(start, tz, param="from"), parse_instant(end, tz, param="to"),
                     bucket, tz)
    return [b.seconds(i) / 3600 for i in range(len(b))]


def test_days_across_both_dst_changes() -> None:
    assert _b("2025-03-29", "2025-04-01", "1d") == [24, 23, 24]
    assert _b("2025-10-25", "2025-10-28", "1d") == [24, 25, 24]


def test_day_buckets_start_at_local_midnight() -> None:
    b = make_buckets(parse_instant("2025-10-26", PARIS, param="from"),
                     parse_instant("2025-10-27", PARIS, param="to"), "1d", PARIS)
    assert b.label(0) == ("2025-10-26T00:00:00+02:00", "2025-10-27T00:00:00+01:00")


def test_hours_on_the_25_hour_day_are_25() -> None:
    hours = _b("2025-10-26", "2025-10-27", "1h")
    assert len(hours) == 25 and set(hours) == {1.0}
    assert len(_b("2025-03-30", "2025-03-31", "15m")) == 23 * 4


def test_weeks_start_monday_and_months_follow_the_calendar() -> None:
    b = make_buckets(parse_instant("2025-11-05", PARIS, param="from"),
                     parse_instant("2025-11-20", PARIS, param="to"), "1w", PARIS)
    assert [e.astimezone(PARIS).weekday() for e in b.edges] == [0, 0, 0, 0]
    months = _b("2025-01-15", "2025-04-02", "1mo")
    assert months == [31 * 24, 28 * 24, 31 * 24 - 1, 30 * 24]  # March loses an hour


def test_fixed_buckets_are_floored_and_ceiled() -> None:
    b = make_buckets(datetime(2025, 1, 1, 10, 7, tzinfo=UTC),
                     datetime(2025, 1, 1, 10, 31, tzinfo=UTC), "15m", PARIS)
    assert [e.minute for e in b.edges] == [0, 15, 30, 45]


def test_half_hour_offset_zone_aligns_hours_locally() -> None:
    kolkata = ZoneInfo("Asia/Kolkata")
    b = make_buckets(parse_instant("2025-01-01T10:20", kolkata, param="from"),
                     parse_instant("2025-01-01T12:00", kolkata, param="to"), "1h", kolkata)
    assert [e.astimezone(kolkata).minute for e in b.edges] == [0, 0, 0]


def test_instants_dates_naive_and_offsets() -> None:
    assert parse_instant("2025-07-01", PARIS, param="from") == datetime(2025, 6, 30, 22,
                                                                         tzinfo=UTC)
    assert parse_instant("2025-07-01T12:00Z", PARIS, param="from").hour == 12
    assert parse_instant("2025-07-01T12:00", PARIS, param="from").hour == 10


@pytest.mark.parametrize("value", ["yesterday", "2025-13-01", "1' OR 1=1 --", "9" * 100,
                                   "1900-01-01", "9999-12-31"])
def test_bad_instants_are_422(value: str) -> None:
    with pytest.raises(ApiError) as e:
        parse_instant(value, PARIS, param="from")
    assert e.value.status == 422


@pytest.mark.parametrize(("start", "end", "bucket"), [
    ("2025-01-01", "2025-03-01", "5m"),       # range over 31 days
    ("2020-01-01", "2025-01-01", "1h"),       # over a year of hours
    ("2025-01-02", "2025-01-01", "1h"),       # reversed
    ("2025-01-01", "2025-01-02", "2h"),       # unknown bucket
    ("2025-01-01", "2025-01-02", "1h; DROP"),
])
def test_bounds_are_422_with_the_limit(start: str, end: str, bucket: str) -> None:
    with pytest.raises(ApiError) as e:
        _b(start, end, bucket)
    assert e.value.status == 422


@pytest.mark.parametrize("bucket", list(MAX_RANGE_DAYS))
def test_point_limit_is_never_exceeded(bucket: str) -> None:
    day = datetime(2025, 10, 26)  # 25 hours: summer time ends
    start = day.replace(tzinfo=PARIS)
    end = (day + timedelta(days=MAX_RANGE_DAYS[bucket])).replace(tzinfo=PARIS)
    b = make_buckets(start.astimezone(UTC), end.astimezone(UTC), bucket, PARIS)
    assert len(b) <= MAX_POINTS


def test_five_minute_buckets_cover_one_local_day_at_most() -> None:
    """5-minute buckets are computed from raw rows: one day at most (25 hours on the day
    summer time ends), refused beyond with the limit in the message."""
    assert len(_b("2025-10-26", "2025-10-27", "5m")) == 25 * 12
    assert len(_b("2025-03-30", "2025-03-31", "5m")) == 23 * 12
    with pytest.raises(ApiError) as e:
        _b("2025-11-17", "2025-11-18T00:05", "5m")
    assert e.value.status == 422
    assert e.value.detail == {"param": "to", "message": "range too long for bucket 5m: at "
                              "most 1 day; ask a shorter range or a larger bucket"}
    assert len(_b("2025-11-17", "2025-12-17", "10m")) == 30 * 144  # a month: 10 minutes


@pytest.mark.parametrize("name", ["Mars/Olympus", "../../etc/passwd", "", "x" * 80, "UTC'--"])
def test_unknown_zones_are_422(name: str) -> None:
    with pytest.raises(ApiError):
        parse_tz(name or "Nowhere/None", "Europe/Paris")


def test_known_zone() -> None:
    assert parse_tz(None, "Europe/Paris").key == "Europe/Paris"
    assert parse_tz("America/New_York", "Europe/Paris").key == "America/New_York"


def test_a_range_asked_again_shares_its_buckets_and_what_derives_from_them() -> None:
    """Dashboards ask the same month again and again: its edges, labels and alignment are
    made once; another range, bucket or zone gets its own."""
    start, end = datetime(2025, 10, 1, tzinfo=UTC), datetime(2025, 11, 1, tzinfo=UTC)
    a = make_buckets(start, end, "1h", PARIS)
    labels, on_hours = a.labels, a.on_slots(3600)
    b = make_buckets(start, end, "1h", PARIS)
    assert b is a and b.labels is labels and on_hours and not a.on_slots(7 * 3600)
    assert make_buckets(start, end, "1d", PARIS) is not a
    assert make_buckets(start, end, "1h", ZoneInfo("Asia/Kolkata")) is not a
    assert make_buckets(start, end + timedelta(hours=1), "1h", PARIS) is not a


def test_the_shared_buckets_are_bounded_by_the_edges_they_keep() -> None:
    """A year of hours weighs 8,785 edges: the oldest ranges go first past the budget."""
    from api import timeq

    first = make_buckets(datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC),
                         "1h", PARIS)
    for k in range(timeq._CACHE_EDGES // 8000 + 2):
        make_buckets(datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=k + 1),
                     datetime(2025, 1, 1, tzinfo=UTC), "1h", PARIS)
    assert timeq._cache_edges <= timeq._CACHE_EDGES
    again = make_buckets(datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC),
                         "1h", PARIS)
    assert again is not first and again.edges == first.edges


def test_the_job_fills_the_local_months_that_ended_in_its_range() -> None:
    """Months begin at local midnight on the first (31 or 30 days, 1 hour more or less in
    March and October); the job's range must reach a month's end for it to be filled."""
    from api.maintenance import local_months

    oct1, nov1 = datetime(2025, 9, 30, 22, tzinfo=UTC), datetime(2025, 10, 31, 23, tzinfo=UTC)
    dec1 = datetime(2025, 11, 30, 23, tzinfo=UTC)
    assert local_months(oct1 + timedelta(days=3), nov1, PARIS) == [oct1, nov1]
    assert local_months(oct1, dec1 + timedelta(hours=5), PARIS) == [oct1, nov1, dec1]
    assert local_months(oct1, nov1 - timedelta(hours=1), PARIS) == []  # October not over
    assert (nov1 - oct1) == timedelta(days=31, hours=1)  # the 25-hour day is in it
