"""Which source answers each bucket (``api.rollups.split``): the rollup where it covers
the bucket, raw rows where they are all still there, nothing (with a reason) elsewhere."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from api.rollups import QUARTER_S, Coverage, Segment, split
from api.timeq import make_buckets

PARIS = ZoneInfo("Europe/Paris")
KOLKATA = ZoneInfo("Asia/Kolkata")


def _t(day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def _kinds(segments: list[Segment]) -> list[tuple[str, int]]:
    return [(s.kind, len(s.buckets)) for s in segments]


# Rolled up from the 5th 00:00Z to the 10th 00:00Z; raw rows complete from the 8th.
COV = Coverage(since=_t(5), watermark=_t(10), raw_from=_t(8))


def test_a_rolled_up_bucket_comes_from_the_rollup_wherever_the_range_starts() -> None:
    inside = split(make_buckets(_t(5), _t(11), "1d", ZoneInfo("UTC")), COV)
    before = split(make_buckets(_t(1), _t(11), "1d", ZoneInfo("UTC")), COV)
    assert _kinds(inside) == [("rollup", 5), ("raw", 1)]
    assert _kinds(before) == [("gone", 4), ("rollup", 5), ("raw", 1)]
    assert before[1].buckets.edges == inside[0].buckets.edges
    assert "the rollup covers" in before[0].reason and "gone (retention)" in before[0].reason


def test_raw_rows_answer_until_retention_has_dropped_them() -> None:
    never_dropped = Coverage(since=_t(5), watermark=_t(10))
    assert _kinds(split(make_buckets(_t(1), _t(11), "1d", ZoneInfo("UTC")),
                        never_dropped)) == [("raw", 4), ("rollup", 5), ("raw", 1)]
    assert _kinds(split(make_buckets(_t(1), _t(11), "1d", ZoneInfo("UTC")), COV,
                        "raw")) == [("gone", 7), ("raw", 3)]


def test_unaligned_zones_and_unusable_rollups_read_raw_or_nothing() -> None:
    # Kolkata hours are half past UTC hours, but whole UTC quarter hours
    b = make_buckets(_t(7, 18, 30), _t(8, 2, 30), "1h", KOLKATA)
    segs = split(b, COV)
    assert _kinds(segs) == [("gone", 6), ("raw", 2)]  # raw from the 8th 00:30Z
    assert "do not start and end on whole UTC hours" in segs[0].reason
    assert _kinds(split(b, COV, slot_s=QUARTER_S)) == [("rollup", 8)]
    segs = split(make_buckets(_t(6), _t(9), "1h", PARIS), COV, unusable="not in this zone")
    assert segs[0].kind == "gone" and segs[0].reason.startswith("not in this zone")


def test_buckets_that_have_not_started_are_answered_null_with_a_reason() -> None:
    # Asked at 10:30Z on the 9th: the 10:00 bucket is answered so far, later ones are null.
    b = make_buckets(_t(9, 8), _t(9, 14), "1h", ZoneInfo("UTC"))
    segs = split(b, COV, now=_t(9, 10, 30))
    assert _kinds(segs) == [("rollup", 3), ("gone", 3)]
    assert segs[1].buckets.edges[0] == _t(9, 11)
    assert segs[1].reason == "in the future: no data yet"
    assert _kinds(split(b, COV, "raw", now=_t(9, 10, 30))) == [("raw", 3), ("gone", 3)]


def test_a_request_the_rollup_covers_whole_is_one_segment() -> None:
    b = make_buckets(_t(6), _t(9), "1h", PARIS)
    assert _kinds(split(b, COV, now=_t(20))) == [("rollup", 72)]
    assert split(b, COV)[0].buckets.edges == b.edges
    # the last bucket started just before now: answered so far; starting at now: null
    assert _kinds(split(b, COV, now=_t(8, 23, 1))) == [("rollup", 72)]
    assert _kinds(split(b, COV, now=_t(8, 23))) == [("rollup", 71), ("gone", 1)]
    assert _kinds(split(b, Coverage(since=_t(6, 1), watermark=_t(10)))) == [("raw", 1),
                                                                            ("rollup", 71)]
