"""The API's per-request shortcuts: the verified-token cache, bucket slices sharing their
labels, large answers sent in pieces equal to the whole."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from api.output import csv_pieces, json_pieces, to_csv
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


def _joined(pieces: AsyncIterator[bytes]) -> list[bytes]:
    async def collect() -> list[bytes]:
        return [p async for p in pieces]

    return asyncio.run(collect())


def _rows(n: int) -> list[dict[str, Any]]:
    return [{"start": f"2025-01-01T{i % 24:02d}:00:00+01:00", "value": i / 3 if i % 7 else None,
             "ok": i % 2 == 0, "note": 'a "quoted", comma' if i % 5 == 0 else "é",
             "nested": {"k": [i]}} for i in range(n)]


@pytest.mark.parametrize("n", [0, 1, 3, 4, 10])
@pytest.mark.parametrize("meta", [{}, {"bucket": "1h", "source": "rollup", "count": 3}])
def test_json_pieces_are_the_whole_answer(n: int, meta: dict[str, Any]) -> None:
    rows = _rows(n)
    pieces = _joined(json_pieces(meta, rows, size=3))
    assert b"".join(pieces) == orjson.dumps({**meta, "data": rows})
    assert len(pieces) == 2 + -(-n // 3)  # head, one piece per 3 rows, tail


@pytest.mark.parametrize("n", [0, 2, 3, 7])
def test_csv_pieces_are_the_whole_answer(n: int) -> None:
    rows, cols = _rows(n), ("start", "value", "ok", "note", "nested", "missing")
    pieces = _joined(csv_pieces(rows, cols, size=3))
    assert b"".join(pieces) == to_csv(rows, cols).encode()
    assert len(pieces) == 1 + -(-n // 3)
