"""The API reads from a hot standby (BEFFROI_DATABASE_READ_URL) while the ingestor writes to
the primary: two real clusters, the second made with pg_basebackup and streaming from the
first."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.tokens import create_token
from beffroi.migrate import migrate
from beffroi.settings import Settings
from beffroi.stack import Stack
from beffroi.stack.process import run
from beffroi.stack.replica import Pair, replica_pair
from tests.integration.ingest_helpers import ingest_settings, running_ingestor
from tests.integration.mqtt_helpers import Publisher, register

pytestmark = [pytest.mark.stack, pytest.mark.slow]


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    with replica_pair(setup=migrate) as p:
        yield p


def _states(topic_prefix: str, spots: list[str], occupied: bool) -> list[tuple[str, bytes]]:
    state = "occupied" if occupied else "free"
    return [(f"{topic_prefix}/parking/{spot}/state", json.dumps({"state": state}).encode())
            for spot in spots]


def test_api_reads_from_the_standby_and_survives_the_primary(
        pair: Pair, stack: Stack, settings: Settings, uid: str) -> None:
    spots = [f"{uid}-s{i}" for i in range(4)]
    register(pair.primary_url, uid, dict.fromkeys(spots, "parking_spot"))
    with psycopg.connect(pair.primary_url, autocommit=True) as conn:
        zone = conn.execute("SELECT site_id FROM devices WHERE id = %s",
                            (spots[0],)).fetchone()
        token, _ = create_token(conn, "replica", ["read"])
    assert zone is not None
    s = ingest_settings(settings)
    app_settings = settings.model_copy(update={
        "database_url": SecretStr(pair.primary_url),
        "database_read_url": SecretStr(pair.standby_url)})
    primary_only = settings.model_copy(update={"database_url": SecretStr(pair.primary_url)})
    path = f"/v1/parking/zones/{zone[0]}/current"
    auth = {"Authorization": f"Bearer {token}"}

    from api.main import create_app

    async def scenario() -> None:
        pub = Publisher.as_role(stack, "admin")
        try:
            async with running_ingestor(stack, s, pair.primary_url) as ing:
                pub.publish_many(_states(s.topic_prefix, spots, True))
                await _until(lambda: ing.committed_messages >= 4)
                await asyncio.to_thread(pair.replayed)
                with TestClient(create_app(app_settings)) as api, \
                        TestClient(create_app(primary_only)) as api_primary:
                    on_standby = api.get(path, headers=auth)
                    assert on_standby.status_code == 200, on_standby.text
                    assert on_standby.json() == api_primary.get(path, headers=auth).json()
                    assert on_standby.json()["occupied"] == 4
                    # the API's connections are the standby's
                    with psycopg.connect(pair.standby_url, autocommit=True) as c:
                        row = c.execute("SELECT count(*) FROM pg_stat_activity"
                                        " WHERE application_name = 'beffroi-api'").fetchone()
                        assert row is not None and row[0] >= 1
                    # the primary stops: the API keeps answering, the ingestor keeps the
                    # messages unacknowledged
                    await asyncio.to_thread(pair.primary.stop)
                    try:
                        pub.publish_many(_states(s.topic_prefix, spots[:2], False))
                        again = api.get(path, headers=auth)
                        assert again.status_code == 200, again.text
                        assert again.json()["occupied"] == 4
                    finally:
                        await asyncio.to_thread(pair.primary.start)
                    await _until(lambda: ing.committed_messages >= 6, timeout=90)
                    await asyncio.to_thread(pair.replayed)
                    after = api.get(path, headers=auth).json()
                    assert (after["occupied"], after["free"]) == (2, 2)
        finally:
            pub.close()

    asyncio.run(scenario())
    with psycopg.connect(pair.standby_url, autocommit=True) as conn:
        rows = conn.execute("SELECT count(*) FROM parking_spot_state WHERE device_id = ANY(%s)",
                            (spots,)).fetchone()
    assert rows == (6,)


async def _until(cond: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def test_standby_answers_equal_the_primarys_once_replayed(pair: Pair, uid: str) -> None:
    spots = [f"{uid}-s{i}" for i in range(3)]
    register(pair.primary_url, uid, dict.fromkeys(spots, "parking_spot"))
    now = datetime.now(UTC)
    with psycopg.connect(pair.primary_url, autocommit=True) as conn:
        for i, spot in enumerate(spots):
            conn.execute("INSERT INTO parking_spot_state (time, device_id, state) VALUES"
                         " (%s, %s, %s)", (now - timedelta(minutes=i), spot, "occupied"))
    pair.replayed()
    query = ("SELECT device_id, state FROM parking_spot_state WHERE device_id = ANY(%s)"
             " ORDER BY 1")
    with psycopg.connect(pair.primary_url) as p, psycopg.connect(pair.standby_url) as s:
        assert p.execute(query, (spots,)).fetchall() == s.execute(query, (spots,)).fetchall()
        assert len(s.execute(query, (spots,)).fetchall()) == 3


def test_ingestor_resumes_on_the_promoted_standby(pair: Pair, stack: Stack, settings: Settings,
                                                  uid: str) -> None:
    """The primary is lost with messages unacknowledged; the standby is promoted and the
    ingestor pointed at it stores everything (this test ends the pair: it runs last)."""
    spots = [f"{uid}-s{i}" for i in range(4)]
    register(pair.primary_url, uid, dict.fromkeys(spots, "parking_spot"))
    s = ingest_settings(settings, ingest_stop_timeout_s=2.0)
    pub = Publisher.as_role(stack, "admin")

    async def scenario() -> None:
        async with running_ingestor(stack, s, pair.primary_url, purge=False) as ing:
            pub.publish_many(_states(s.topic_prefix, spots, True))
            await _until(lambda: ing.committed_messages >= 4)
            await asyncio.to_thread(pair.replayed)
            await asyncio.to_thread(pair.primary.stop)  # the primary's machine is lost
            pub.publish_many(_states(s.topic_prefix, spots, False))
        # promoted by the failover manager; BEFFROI_DATABASE_URL now leads to it
        run([str(pair.standby.pg_bin / "pg_ctl"), "-D", str(pair.standby.data_dir), "-w",
             "promote"], user=pair.standby.user)
        async with running_ingestor(stack, s, pair.standby_url) as ing:
            await _until(lambda: ing.committed_messages >= 4, timeout=90)

    try:
        asyncio.run(scenario())
    finally:
        pub.close()
    with psycopg.connect(pair.standby_url, autocommit=True) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
        rows = conn.execute("SELECT state, count(*) FROM parking_spot_state"
                            " WHERE device_id = ANY(%s) GROUP BY 1 ORDER BY 1",
                            (spots,)).fetchall()
    assert rows == [("free", 4), ("occupied", 4)]
