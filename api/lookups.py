"""Registry lookups remembered until the registry changes.

Every time-series request looks up its site or device, and most a figure of the registry
besides (a district's meters, a zone's slowest sensor): one or two round trips before the
query that matters, about a millisecond of CPU between the API and PostgreSQL on a small
machine. The registry changes rarely, so an API process keeps those answers: a trigger on
``devices`` and ``sites`` (migration ``019_registry_notify.sql``) sends a notification on
channel ``beffroi_registry`` with every change, which :func:`listen` receives and which
forgets them all. Nothing is kept while the process is not listening (not yet connected,
connection lost), and an answer is trusted :data:`TTL_S` seconds at most: on a hot
standby the change may be replayed after the notification came. Misses (404) are never
kept. Keys say what the answer is of; values are shared: callers copy what they change.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

import psycopg

log = logging.getLogger(__name__)

CHANNEL = "beffroi_registry"
#: Longest an answer is trusted without a change notified (a standby's replay lag).
TTL_S = 10.0
MAX_ENTRIES = 4096
T = TypeVar("T")


class RegistryCache:
    """The answers of one API process, forgotten on every notified registry change."""

    def __init__(self, ttl_s: float = TTL_S, max_entries: int = MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        #: Bumped by every change: an answer read before a change is not kept after it.
        self.generation = 0
        #: Whether the process is listening to the changes (nothing is kept otherwise).
        self.live = False

    def get(self, key: Hashable) -> Any | None:
        """The answer kept for ``key``, or None."""
        if not self.live:
            return None
        hit = self._entries.get(key)
        if hit is None:
            return None
        if self._clock() >= hit[0]:
            del self._entries[key]
            return None
        return hit[1]

    def put(self, key: Hashable, value: Any, generation: int) -> None:
        """Keep ``value``, read when the generation was ``generation`` (dropped if the
        registry changed since)."""
        if not self.live or generation != self.generation:
            return
        self._entries.pop(key, None)
        while len(self._entries) >= self.max_entries:
            self._entries.popitem(last=False)
        self._entries[key] = (self._clock() + self.ttl_s, value)

    def invalidate(self) -> None:
        """Forget everything (the registry changed, or changes may have been missed)."""
        self.generation += 1
        self._entries.clear()

    async def through(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> T:
        """The answer kept for ``key``, else ``compute()``'s, kept (None is not kept)."""
        hit = self.get(key)
        if hit is not None:
            out: T = hit
            return out
        generation = self.generation
        value = await compute()
        if value is not None:
            self.put(key, value, generation)
        return value


_of_connection: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], RegistryCache] = (
    weakref.WeakKeyDictionary())


def attach(conn: psycopg.AsyncConnection[Any], cache: RegistryCache) -> None:
    """Make the lookups made on ``conn`` (a pooled connection of an API process) use
    ``cache``."""
    _of_connection[conn] = cache


async def remembered(conn: psycopg.AsyncConnection[Any], key: Hashable,
                     compute: Callable[[], Awaitable[T]]) -> T:
    """``compute()``, or its answer kept by the cache of ``conn``'s process (connections
    outside an API process's pool compute every time)."""
    cache = _of_connection.get(conn)
    if cache is None:
        return await compute()
    return await cache.through(key, compute)


async def listen(db_url: str, cache: RegistryCache, *, max_backoff_s: float = 30.0) -> None:
    """Receive the registry's changes until cancelled, forgetting ``cache`` on each; on a
    lost connection, stop keeping anything and connect again (capped jittered backoff)."""
    delay = 0.5
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                    db_url, autocommit=True, application_name="beffroi-api-registry",
                    connect_timeout=10) as conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                cache.invalidate()  # changes made while not listening
                cache.live = True
                delay = 0.5
                async for _ in conn.notifies():
                    cache.invalidate()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("registry notifications lost (%s); registry lookups not kept "
                        "until reconnected", type(exc).__name__)
        finally:
            cache.live = False
            cache.invalidate()
        await asyncio.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, max_backoff_s)
