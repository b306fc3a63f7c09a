"""Pacing of a simulator run: as fast as asked, and never ahead of the clock when following it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from simulators.publisher import pacer

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def test_without_clock_messages_are_due_at_offset_over_speed() -> None:
    due = pacer(100.0, 600.0, None, NOW)
    assert due is not None
    assert due(0) == 100.0
    assert due(3600) == 106.0


def test_as_fast_as_possible_has_no_due_time() -> None:
    assert pacer(100.0, None, None, NOW) is None


def test_following_the_clock_replays_the_past_fast_then_goes_live() -> None:
    # The scenario started two hours ago: its first two hours are replayed at x600 (12 s),
    # then each message waits for the wall clock to reach its simulated time.
    due = pacer(100.0, 600.0, NOW - timedelta(hours=2), NOW)
    assert due is not None
    assert due(0) == 100.0
    assert due(3600) == 106.0                  # an hour ago: in the fast part
    assert due(7200) == 112.0                  # now: 12 s of replay later
    assert due(7200 + 600) == 100.0 + 600      # ten minutes from now: in ten minutes
    assert due(10 * 3600) == 100.0 + 8 * 3600  # eight hours from now: in eight hours


def test_following_the_clock_at_full_speed_waits_only_for_the_future() -> None:
    due = pacer(100.0, None, NOW - timedelta(minutes=5), NOW)
    assert due is not None
    assert due(0) == 100.0 - 300               # in the past: due already
    assert due(600) == 100.0 + 300             # five minutes from now
