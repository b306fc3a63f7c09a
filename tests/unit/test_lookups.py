"""The registry cache of an API process: what it keeps, and when it forgets."""

from __future__ import annotations

import asyncio

from api.lookups import RegistryCache


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_nothing_is_kept_while_not_listening() -> None:
    cache = RegistryCache()
    cache.put("k", 1, cache.generation)
    assert cache.get("k") is None
    cache.live = True
    cache.put("k", 1, cache.generation)
    assert cache.get("k") == 1
    cache.live = False  # the connection was lost: changes may be missed
    assert cache.get("k") is None


def test_an_answer_read_before_a_change_is_not_kept_after_it() -> None:
    cache = RegistryCache()
    cache.live = True
    generation = cache.generation
    cache.invalidate()  # notified while the answer was being read
    cache.put("k", "old", generation)
    assert cache.get("k") is None
    cache.put("k", "new", cache.generation)
    cache.invalidate()
    assert cache.get("k") is None


def test_an_answer_is_trusted_ttl_seconds_at_most() -> None:
    clock = Clock()
    cache = RegistryCache(ttl_s=10, clock=clock)
    cache.live = True
    cache.put("k", 1, cache.generation)
    clock.t = 9.9
    assert cache.get("k") == 1
    clock.t = 10.0
    assert cache.get("k") is None


def test_the_oldest_answers_go_past_the_bound() -> None:
    cache = RegistryCache(max_entries=3)
    cache.live = True
    for k in range(5):
        cache.put(k, k, cache.generation)
    assert [cache.get(k) for k in range(5)] == [None, None, 2, 3, 4]


def test_through_computes_once_and_never_keeps_none() -> None:
    cache = RegistryCache()
    cache.live = True
    calls: list[str] = []

    async def compute(value: object) -> object:
        calls.append("x")
        return value

    async def run() -> None:
        assert await cache.through("a", lambda: compute({"id": "a"})) == {"id": "a"}
        assert await cache.through("a", lambda: compute({"id": "b"})) == {"id": "a"}
        assert await cache.through("missing", lambda: compute(None)) is None
        assert await cache.through("missing", lambda: compute(None)) is None

    asyncio.run(run())
    assert len(calls) == 3
