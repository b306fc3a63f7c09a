"""The maintenance job: retention by whole chunks, wifi sessions aggregated then deleted
after 24 hours (CNIL), expired privacy keys deleted, the advisory lock, `beffroi maintain`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.maintenance import LOCK_KEY, Report, run_once
from api.tokens import create_token
from beffroi.settings import Settings
from beffroi.stack import Stack
from devices import store
from tests.conftest import random_tag, throwaway_database
from tests.unit.test_sim_stream import tiny_city

pytestmark = pytest.mark.stack

NOW = datetime(2025, 11, 19, 23, 30, tzinfo=UTC)  # 00:30 in Paris on the 20th


def _key(n: int) -> bytes:
    return n.to_bytes(16, "big")


@pytest.fixture(scope="module")
def db(stack: Stack, settings: Settings) -> Iterator[tuple[str, str, Settings]]:
    p = f"{random_tag('m')}-"
    with throwaway_database(stack, settings, "maint") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            store.import_registry(conn, tiny_city(prefix=p))
            # grid rows 600 days ago (dropped at 400 days) and yesterday (kept)
            for t in (NOW - timedelta(days=600), NOW - timedelta(days=1)):
                conn.execute("INSERT INTO grid_readings (time, device_id, energy_import_wh) "
                             "VALUES (%s, %s, 1)", (t, f"{p}linky-1"))
            conn.execute("INSERT INTO dead_letters (received_at, topic, reason, detail, payload,"
                         " payload_size) VALUES (%s, 't', 'invalid_json', 'x', '', 0)",
                         (NOW - timedelta(days=45),))
            # Sessions on 2025-11-18 (Paris): 3 clients, one of them on both APs; client 1
            # stays 10 minutes (paired), client 2 reports session_s = 7200.
            d18 = datetime(2025, 11, 18, 9, tzinfo=UTC)
            rows = [(d18, "ap-1", 1, "associated", None),
                    (d18 + timedelta(minutes=10), "ap-1", 1, "disassociated", None),
                    (d18 + timedelta(minutes=20), "ap-2", 1, "associated", None),
                    (d18 + timedelta(hours=3), "ap-2", 2, "disassociated", 7200),
                    (d18 + timedelta(hours=5), "ap-1", 3, "associated", None),
                    # 30 hours old at NOW (18:30 on the 18th in Paris): past 24 h
                    (NOW - timedelta(hours=30), "ap-1", 4, "associated", None),
                    # one hour old: kept
                    (NOW - timedelta(hours=1), "ap-2", 5, "associated", None)]
            for t, ap, k, ev, sess in rows:
                conn.execute("INSERT INTO wifi_sessions (time, device_id, client_key, event, "
                             "session_s) VALUES (%s, %s, %s, %s, %s)",
                             (t, f"{p}{ap}", _key(k), ev, sess))
            for day in (date(2025, 11, 18), date(2025, 11, 19), date(2025, 11, 20)):
                conn.execute("INSERT INTO privacy_keys (day, key) VALUES (%s, %s)",
                             (day, b"k" * 32))
            token, _ = create_token(conn, f"{p}t", ["read"])
        yield url, p, settings.model_copy(update={"database_url": SecretStr(url),
                                                  "timezone": "Europe/Paris"})
        del token


def _run(url: str, settings: Settings, now: datetime, **kw: Any) -> Report:
    async def go() -> Report:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as c:
            return await run_once(c, settings, now, **kw)

    return asyncio.run(go())


def _count(url: str, query: str, *args: Any) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(query, args).fetchone()
        assert row is not None
        return int(row[0])


def test_the_lock_keeps_a_second_run_out(db: tuple[str, str, Settings]) -> None:
    url, _p, s = db
    with psycopg.connect(url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        assert _run(url, s, NOW).ran is False
        other.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    assert _count(url, "SELECT count(*) FROM wifi_sessions") == 7  # nothing happened


def test_retention_aggregates_then_deletes(db: tuple[str, str, Settings]) -> None:
    url, p, s = db
    report = _run(url, s, NOW)
    assert report.ran
    # raw grid: the 600-day-old chunk is gone, yesterday's stays; dead letters past 30 days
    assert report.dropped_chunks["grid_readings"] >= 1
    assert _count(url, "SELECT count(*) FROM grid_readings") == 1
    assert _count(url, "SELECT count(*) FROM dead_letters") == 0
    # wifi sessions: only the one younger than 24 h is left; keys of ended days gone
    assert _count(url, "SELECT count(*) FROM wifi_sessions") == 1
    assert _count(url, "SELECT count(*) FROM wifi_sessions WHERE time < %s",
                  NOW - timedelta(hours=24)) == 0
    assert _count(url, "SELECT count(*) FROM privacy_keys") == 1
    # ... but the 18th survives as aggregates: 4 visitors on the square, 3 and 2 per AP
    assert date(2025, 11, 18) in report.days_aggregated
    with psycopg.connect(url) as conn:
        rows: dict[str, int] = dict(conn.execute(
            "SELECT device_id, visitors FROM wifi_visitors_1d WHERE day = '2025-11-18' "
            "AND site_id = %s", (f"{p}sq",)).fetchall())
    assert rows == {"": 4, f"{p}ap-1": 3, f"{p}ap-2": 2}
    assert _count(url, "SELECT count(*) FROM wifi_visitors_1d WHERE visitors < 0") == 0


def test_past_days_read_from_the_aggregates(db: tuple[str, str, Settings]) -> None:
    from api.main import create_app

    url, p, s = db
    with psycopg.connect(url) as conn:
        token, _ = create_token(conn, f"{p}t2", ["read"])
    h = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(s)) as client:
        r = client.get(f"/v1/wifi/squares/{p}sq/visitors?from=2025-11-17&to=2025-11-19"
                       "&bucket=1d", headers=h).json()
        assert r["source"] == "rollup"
        assert [d["unique_visitors"] for d in r["data"]] == [0, 4]
        raw = client.get(f"/v1/wifi/squares/{p}sq/visitors?from=2025-11-18&to=2025-11-19"
                         "&bucket=1d&source=raw", headers=h).json()
        # raw rows are gone (CNIL): unknown, with the reason, never a zero
        assert raw["data"][0]["unique_visitors"] is None and raw["source"] == "none"
        assert "gone (retention)" in raw["unavailable"][0]["reason"]
        hourly = client.get(f"/v1/wifi/aps/{p}ap-1/visitors?from=2025-11-18T09:00Z"
                            "&to=2025-11-18T15:00Z&bucket=1h", headers=h).json()
        assert [d["unique_visitors"] for d in hourly["data"]] == [1, 0, 0, 0, 0, 1]
        dwell = client.get(f"/v1/wifi/squares/{p}sq/dwell?from=2025-11-18&to=2025-11-19"
                           "&bucket=1d", headers=h).json()
        day = dwell["data"][0]
        assert dwell["source"] == "rollup"
        assert day["sessions"] == 2 and day["sessions_5m_15m"] == 1
        assert day["sessions_2h_4h"] == 1 and day["mean_dwell_s"] == (600 + 7200) / 2


def _visitors(url: str, table: str, col: str, at: Any, site: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute(f"SELECT device_id, visitors FROM {table} WHERE {col} = %s "
                                 "AND site_id = %s", (at, site)).fetchall())


def test_sessions_arriving_after_aggregation_are_added_once(
        db: tuple[str, str, Settings]) -> None:
    url, p, s = db
    hour = datetime(2025, 11, 19, 22, tzinfo=UTC)  # 23:00 in Paris: the 19th, aggregated
    day_before = _visitors(url, "wifi_visitors_1d", "day", date(2025, 11, 19), f"{p}sq")
    hour_before = _visitors(url, "wifi_visitors_1h", "hour", hour, f"{p}sq")
    assert day_before == {"": 1, f"{p}ap-2": 1}  # client 5, seen at NOW - 1 h
    with psycopg.connect(url, autocommit=True) as conn:  # a gateway flushes its buffer late
        for k, ap in ((6, "ap-1"), (7, "ap-1")):
            conn.execute("INSERT INTO wifi_sessions (time, device_id, client_key, event) "
                         "VALUES (%s, %s, %s, 'associated')",
                         (hour + timedelta(minutes=k), f"{p}{ap}", _key(k)))
    # one minute later: the hour is not due for a recompute, the day was aggregated
    report = _run(url, s, NOW + timedelta(minutes=1), rollups_only=False)
    assert report.late_sessions == 2
    assert _visitors(url, "wifi_visitors_1d", "day", date(2025, 11, 19), f"{p}sq") == {
        "": 3, f"{p}ap-1": 2, f"{p}ap-2": 1}
    after = _visitors(url, "wifi_visitors_1h", "hour", hour, f"{p}sq")
    assert after.get("", 0) == hour_before.get("", 0) + 2
    assert after[f"{p}ap-1"] == hour_before.get(f"{p}ap-1", 0) + 2
    # counted once: the next runs, with or without an hourly recompute, add nothing more
    for minutes in (2, 15):
        again = _run(url, s, NOW + timedelta(minutes=minutes))
        assert again.late_sessions == 0
        assert _visitors(url, "wifi_visitors_1d", "day", date(2025, 11, 19),
                         f"{p}sq")[""] == 3
        assert _visitors(url, "wifi_visitors_1h", "hour", hour, f"{p}sq") == after


def test_cli_runs_the_job(db: tuple[str, str, Settings], capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    from beffroi.cli import main

    url, _p, _s = db
    monkeypatch.setenv("BEFFROI_DATABASE_URL", url)
    assert main(["maintain", "--rollups-only"]) == 0
    assert main(["maintain", "--from", "not-a-date"]) == 1


def test_the_api_process_runs_the_job_periodically(db: tuple[str, str, Settings]) -> None:
    import time

    from api.main import create_app

    url, _p, s = db

    def last_refresh() -> Any:
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT max(refreshed_at) FROM rollup_state").fetchone()
            return row[0] if row else None

    before = last_refresh()
    with TestClient(create_app(s, maintenance_interval_s=0.2)):
        deadline = time.monotonic() + 8
        seen = [before]
        while len(seen) < 3:  # two runs of the job: periodic, not once at start-up
            assert time.monotonic() < deadline, f"the maintenance loop ran {len(seen) - 1}x"
            now = last_refresh()
            if now != seen[-1]:
                seen.append(now)
            time.sleep(0.05)  # polling interval of a loop with a deadline
