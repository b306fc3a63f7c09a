"""Dead-letter counts from the daily counts the maintenance job keeps: whatever the range
(whole local days, cut ends, across the change to summer time), filter and retention, the
counts equal those of the dead letters themselves; the daily rows are really read."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.maintenance import run_once
from api.tokens import create_token
from beffroi.settings import Settings
from beffroi.stack import Stack
from tests.conftest import random_tag, throwaway_database
from tests.integration.api_helpers import api_client

pytestmark = pytest.mark.stack

START = datetime(2025, 3, 27, 21, 7, tzinfo=UTC)  # Paris changes to summer time on the 30th
NOW = datetime(2025, 4, 2, 10, tzinfo=UTC)  # the job's clock: those days have ended
REASONS = ("unknown_device", "invalid_json", "out_of_range")
RANGES = [("2025-03-28", "2025-04-01"),  # whole days, one of 23 hours
          ("2025-03-28T13:00", "2025-03-31T09:30"),  # cut ends
          ("2025-03-27T22:30", "2025-03-28"),  # less than a day
          ("2025-03-30", "2025-03-31")]  # the 23-hour day alone


def _rows(p: str) -> list[tuple[Any, ...]]:
    """Every 37 minutes for 4 days: five devices and messages naming none, three reasons."""
    out = []
    for k in range(4 * 24 * 60 // 37):
        dev = None if k % 7 == 0 else f"{p}d{k % 5}"
        out.append((START + timedelta(minutes=37 * k), f"city/x/{dev or '-'}/state", dev,
                    REASONS[k % 3], "test", b"{}", 2))
    for at in (datetime(2025, 3, 27, 23, tzinfo=UTC), datetime(2025, 3, 30, 22, tzinfo=UTC),
               datetime(2025, 3, 31, 22, tzinfo=UTC)):  # on local midnights: day edges
        out.append((at, "city/x/edge/state", f"{p}d0", "out_of_range", "test", b"{}", 2))
    return out


class Letters:
    def __init__(self, client: TestClient, token: str, url: str, p: str) -> None:
        self.client, self.token, self.url, self.p = client, token, url, p

    def counts(self, **params: str) -> dict[str, Any]:
        r = self.client.get("/v1/operate/dead-letters/counts", params=params,
                            headers={"Authorization": f"Bearer {self.token}"})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def expected(self, lo: str, hi: str, **filters: str) -> Counter[tuple[str | None, str]]:
        """The counts of the dead letters stored (asked of the table itself)."""
        where = ["received_at >= (%s::timestamp AT TIME ZONE 'Europe/Paris')",
                 "received_at < (%s::timestamp AT TIME ZONE 'Europe/Paris')"]
        args: list[Any] = [lo, hi]
        for column, key in (("reason", "reason"), ("device_id", "device")):
            if key in filters:
                where.append(f"{column} = %s")
                args.append(filters[key])
        with psycopg.connect(self.url) as c:
            rows = c.execute(f"SELECT device_id, reason FROM dead_letters WHERE "
                             f"{' AND '.join(where)}", args).fetchall()
        return Counter((d, r) for d, r in rows)


def _got(body: dict[str, Any]) -> Counter[tuple[str | None, str]]:
    out: Counter[tuple[str | None, str]] = Counter()
    for d in body["by_device"]:
        for reason, n in d["by_reason"].items():
            out[(d["device_id"], reason)] = n
    assert body["total"] == sum(out.values()) == sum(r["count"] for r in body["by_reason"])
    return out


@pytest.fixture(scope="module")
def letters(stack: Stack, settings: Settings) -> Iterator[Letters]:
    p = random_tag("dd")
    with throwaway_database(stack, settings, "deadletterdays") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.cursor().executemany(
                "INSERT INTO dead_letters (received_at, topic, device_id, reason, detail, "
                "payload, payload_size) VALUES (%s, %s, %s, %s, %s, %s, %s)", _rows(p))
            token, _ = create_token(conn, f"{p}t", ["read", "operate"])

        async def maintain() -> None:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as c:
                assert (await run_once(c, settings, NOW, rollups_only=True)).ran

        asyncio.run(maintain())
        with api_client(settings, url, timezone="Europe/Paris") as (client, _s):
            yield Letters(client, token, url, p)


@pytest.mark.parametrize(("lo", "hi"), RANGES)
def test_counts_equal_the_dead_letters_whatever_the_range(letters: Letters, lo: str,
                                                          hi: str) -> None:
    assert _got(letters.counts(**{"from": lo, "to": hi})) == letters.expected(lo, hi)
    d1 = f"{letters.p}d1"
    assert _got(letters.counts(**{"from": lo, "to": hi, "device": d1})) == letters.expected(
        lo, hi, device=d1)
    assert _got(letters.counts(**{"from": lo, "to": hi, "reason": "invalid_json"})) == (
        letters.expected(lo, hi, reason="invalid_json"))
    assert _got(letters.counts(**{"from": lo, "to": hi, "topic_prefix": "city/"})) == (
        letters.expected(lo, hi))


def test_the_daily_counts_are_read_for_whole_days(letters: Letters) -> None:
    """Changed behind the job's back, a day's counts show in the ranges that hold the
    whole day and in no other: the route reads them (and reads nothing else for them)."""
    with psycopg.connect(letters.url, autocommit=True) as c:
        cur = c.execute("UPDATE dead_letter_days SET n = n + 100 WHERE day = '2025-03-30'")
        changed = cur.rowcount
    assert changed > 5  # its devices and reasons
    try:
        whole = letters.counts(**{"from": RANGES[0][0], "to": RANGES[0][1]})
        assert whole["total"] == sum(letters.expected(*RANGES[0]).values()) + 100 * changed
        cut = letters.counts(**{"from": "2025-03-30T01:00", "to": "2025-03-31"})
        assert _got(cut) == letters.expected("2025-03-30T01:00", "2025-03-31")
    finally:
        with psycopg.connect(letters.url, autocommit=True) as c:
            c.execute("UPDATE dead_letter_days SET n = n - 100 WHERE day = '2025-03-30'")


def test_retention_drops_the_daily_counts_with_the_dead_letters(
        letters: Letters, settings: Settings) -> None:
    """Past the dead letters' retention cutoff the daily counts go and the range before it
    is counted from whatever dead letters remain (drop_chunks drops whole chunks only)."""
    cutoff = datetime(2025, 3, 30, 12, tzinfo=UTC)
    later = cutoff + timedelta(days=settings.retention_dead_letters_days)

    async def maintain() -> None:
        async with await psycopg.AsyncConnection.connect(letters.url, autocommit=True) as c:
            assert (await run_once(c, settings, later)).ran

    asyncio.run(maintain())
    with psycopg.connect(letters.url) as c:
        first = c.execute("SELECT min(day_start) FROM dead_letter_days").fetchone()
        since = c.execute("SELECT since FROM rollup_state WHERE name = 'dead_letters'"
                          ).fetchone()
    assert first is not None and first[0] >= cutoff
    assert since is not None and since[0] >= cutoff
    for lo, hi in RANGES:
        assert _got(letters.counts(**{"from": lo, "to": hi})) == letters.expected(lo, hi)
