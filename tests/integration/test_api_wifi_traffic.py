"""Wifi traffic from cumulative counters (reboots: never negative) and dwell times from
paired association events, against values computed by hand, raw and rolled up."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.maintenance import run_once
from api.tokens import create_token
from beffroi.settings import Settings
from beffroi.stack import Stack
from devices import store
from tests.conftest import random_tag, throwaway_database
from tests.unit.test_sim_stream import tiny_city

pytestmark = pytest.mark.stack

H = datetime(2025, 11, 18, 10, tzinfo=UTC)
NOW = H + timedelta(hours=5)


@pytest.fixture(scope="module")
def api(stack: Stack, settings: Settings) -> Iterator[tuple[TestClient, dict[str, str], str]]:
    from api.main import create_app

    p = f"{random_tag('w')}-"
    with throwaway_database(stack, settings, "wifi") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            store.import_registry(conn, tiny_city(prefix=p))
            # ap-1: rx 1000 -> 5000 -> (reboot) 300 -> 800 ; tx 10 -> 20 -> 5 -> 15
            stats = [(H - timedelta(minutes=5), 1000, 10), (H + timedelta(minutes=20), 5000, 20),
                     (H + timedelta(minutes=70), 300, 5), (H + timedelta(minutes=80), 800, 15)]
            for t, rx, tx in stats:
                conn.execute("INSERT INTO wifi_ap_stats (time, device_id, clients, rx_bytes, "
                             "tx_bytes) VALUES (%s, %s, 3, %s, %s)", (t, f"{p}ap-1", rx, tx))
            # ap-2: one report at 10:30 only, and one two days earlier: no interval (> 1 day)
            for t in (H - timedelta(days=2), H + timedelta(minutes=30)):
                conn.execute("INSERT INTO wifi_ap_stats (time, device_id, clients, rx_bytes, "
                             "tx_bytes) VALUES (%s, %s, 1, 100, 100)", (t, f"{p}ap-2"))
            k = [bytes([i]) * 16 for i in range(4)]
            sessions = [(H + timedelta(minutes=1), k[1], "associated", None),
                        (H + timedelta(minutes=1, seconds=40), k[1], "disassociated", None),
                        (H + timedelta(minutes=5), k[2], "associated", None),
                        (H + timedelta(minutes=65), k[2], "disassociated", None),
                        (H + timedelta(minutes=70), k[3], "disassociated", 20000)]
            for t, key, ev, sess in sessions:
                conn.execute("INSERT INTO wifi_sessions (time, device_id, client_key, event, "
                             "session_s) VALUES (%s, %s, %s, %s, %s)",
                             (t, f"{p}ap-1", key, ev, sess))
            token, _ = create_token(conn, f"{p}t", ["read"])
        s = settings.model_copy(update={"database_url": SecretStr(url)})
        with TestClient(create_app(s)) as client:
            yield client, {"Authorization": f"Bearer {token}"}, p
        # (the rollups are made by the last test)
        del url


def _get(api: tuple[TestClient, dict[str, str], str], path: str) -> Any:
    client, h, p = api
    r = client.get(path.format(p=p), headers=h)
    assert r.status_code == 200, r.text
    return r.json()


def test_traffic_counts_a_restart_from_zero(api: Any) -> None:
    body = _get(api, "/v1/wifi/aps/{p}ap-1/traffic?from=2025-11-18T10:00Z"
                     "&to=2025-11-18T12:00Z&bucket=1h")
    assert body["source"] == "raw"
    first, second = body["data"]
    assert (first["rx_bytes"], first["tx_bytes"], first["counter_resets"]) == (4000, 10, 0)
    # 5000 -> 300 restarted: 300 counted, then +500; tx 20 -> 5 (restart): 5, then +10
    assert (second["rx_bytes"], second["tx_bytes"], second["counter_resets"]) == (800, 15, 1)
    assert second["total_bytes"] == 815
    square = _get(api, "/v1/wifi/squares/{p}sq/traffic?from=2025-11-18T10:00Z"
                       "&to=2025-11-18T12:00Z&bucket=1h")
    assert [d["rx_bytes"] for d in square["data"]] == [4000, 800]  # ap-2: no interval
    csv = api[0].get(f"/v1/wifi/squares/{api[2]}sq/traffic?from=2025-11-18T10:00Z"
                     "&to=2025-11-18T12:00Z&bucket=30m&format=csv", headers=api[1])
    assert csv.text.splitlines()[0].startswith("start,end,rx_bytes,tx_bytes,total_bytes")


def test_dwell_pairs_association_and_disassociation(api: Any) -> None:
    body = _get(api, "/v1/wifi/squares/{p}sq/dwell?from=2025-11-18T10:00Z"
                     "&to=2025-11-18T12:00Z&bucket=1h")
    first, second = body["data"]
    assert first["sessions"] == 1 and first["sessions_lt_1m"] == 1
    assert first["mean_dwell_s"] == 40
    assert second["sessions"] == 2 and second["sessions_1h_2h"] == 1
    assert second["sessions_ge_4h"] == 1 and second["mean_dwell_s"] == (3600 + 20000) / 2
    r = api[0].get(f"/v1/wifi/squares/{api[2]}sq/dwell?from=2025-11-18&to=2025-11-19"
                   "&bucket=15m", headers=api[1])
    assert r.status_code == 422


def test_rolled_up_traffic_and_dwell_equal_raw(api: Any, settings: Settings) -> None:
    client = api[0]
    url = client.app.state.settings.database_url.get_secret_value()

    async def go() -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as c:
            await run_once(c, client.app.state.settings, NOW)

    asyncio.run(go())
    for path in ("/v1/wifi/aps/{p}ap-1/traffic", "/v1/wifi/squares/{p}sq/traffic",
                 "/v1/wifi/squares/{p}sq/dwell", "/v1/wifi/aps/{p}ap-1/dwell"):
        q = "?from=2025-11-18T10:00Z&to=2025-11-18T12:00Z&bucket=1h"
        rolled, raw = _get(api, path + q), _get(api, path + q + "&source=raw")
        assert rolled["source"] == "rollup"
        assert rolled["data"] == raw["data"]
        # Equal and not trivially so: some bucket has a non-zero number.
        assert any(isinstance(v, int | float) and not isinstance(v, bool) and v
                   for d in raw["data"] for v in d.values()), raw


def test_rolled_up_visitors_and_clients_equal_raw(api: Any) -> None:
    client = api[0]
    url = client.app.state.settings.database_url.get_secret_value()

    async def go() -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as c:
            await run_once(c, client.app.state.settings, NOW)

    asyncio.run(go())
    q = "?from=2025-11-18T09:00Z&to=2025-11-18T12:00Z&bucket=1h"
    for path in ("/v1/wifi/squares/{p}sq/visitors", "/v1/wifi/aps/{p}ap-1/visitors",
                 "/v1/wifi/squares/{p}sq/clients",  # the square's own hourly rows
                 "/v1/wifi/aps/{p}ap-2/clients"):
        rolled, raw = _get(api, path + q), _get(api, path + q + "&source=raw")
        assert rolled["source"] == "rollup", path + q
        assert rolled["data"] == raw["data"], path + q
        assert any(isinstance(v, int | float) and not isinstance(v, bool) and v
                   for d in raw["data"] for v in d.values()), raw
