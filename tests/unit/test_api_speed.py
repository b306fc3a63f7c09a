"""The API's per-request shortcuts: the verified-token cache, bucket slices sharing their
labels."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from api.timeq import make_buckets, parse_instant
from api.tokens import TokenCache, TokenInfo

_T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _info(i: int) -> TokenInfo:
    return TokenInfo(i, f"t{i}", ("read",), _T0, None, None)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_verified_token_is_trusted_for_the_delay_only() -> None:
    clock = _Clock()
    cache = TokenCache(5.0, clock=clock)
    cache.put(b"h1", _info(1))
    clock.now += 4.9
    assert cache.get(b"h1") == _info(1)
    clock.now += 0.1
    assert cache.get(b"h1") is None  # expired: asked again
    assert cache.get(b"h2") is None


def test_no_delay_keeps_nothing_and_the_size_is_bounded() -> None:
    clock = _Clock()
    off = TokenCache(0.0, clock=clock)
    off.put(b"h", _info(1))
    assert off.get(b"h") is None
    small = TokenCache(60.0, max_entries=2, clock=clock)
    for i in range(3):
        small.put(bytes([i]), _info(i))
    assert small.get(bytes([0])) is None  # the oldest went
    assert small.get(bytes([1])) == _info(1) and small.get(bytes([2])) == _info(2)


def test_a_slice_has_the_labels_of_its_buckets() -> None:
    tz = ZoneInfo("Europe/Paris")
    b = make_buckets(parse_instant("2025-10-25", tz, param="from"),
                     parse_instant("2025-10-28", tz, param="to"), "1h", tz)
    part = b.slice(20, 30)
    assert len(part) == 10 and part.edges == b.edges[20:31]
    fresh = type(b)(b.bucket, b.tz, b.edges[20:31])
    assert [part.label(i) for i in range(10)] == [fresh.label(i) for i in range(10)]
    assert part.meta()["from"] == b.label(20)[0] and part.meta()["to"] == b.label(29)[1]
