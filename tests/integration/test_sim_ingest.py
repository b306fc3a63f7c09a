"""A tiny scenario through the real broker and the real ingestor into the database: the rows
are exactly the generator's clean messages; faults make none; per-device connections
authenticate with the devices' own credentials."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from beffroi.broker_auth import BrokerAccount
from beffroi.settings import Settings
from beffroi.stack import Stack
from devices import credentials as creds
from devices import store
from devices.registry import RegistryFile
from simulators.model import MALFORMED, OVERSIZED, TABLE_OF_KIND, SimMessage
from simulators.publisher import Fleet, PublishError, Router, accounts_for
from simulators.scenario import Scenario
from simulators.stream import Simulation
from tests.integration.ingest_helpers import ingest_settings, running_ingestor, zone_holding
from tests.integration.mqtt_helpers import await_until, count
from tests.integration.sim_helpers import publish_simulation, rows_by_table
from tests.unit.test_sim_stream import ALL_FORMATS, tiny_city

pytestmark = pytest.mark.stack


def _scenario(start: datetime, **overrides: Any) -> Scenario:
    base: dict[str, Any] = {
        "name": "it", "start": start.isoformat(), "duration": "1h", "seed": 11,
        "speed": "max", "formats": ALL_FORMATS,
        "wifi": {"peak_visitors_per_ap_hour": 40},
        "parking": {"arrivals_per_spot_hour": 3},
        "faults": {"malformed": 0.03, "duplicates": 0.05, "out_of_order": 0.05,
                   "unknown_devices": 0.02, "oversized": 0.01, "clock_skew": 0.3},
    }
    base.update(overrides)
    return Scenario.model_validate(base)


def _import(db_url: str, reg: RegistryFile) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        store.import_registry(conn, reg)


async def _rows(db_url: str, ids: list[str]) -> dict[str, int]:
    return await rows_by_table(db_url, TABLE_OF_KIND.values(), ids)


async def _publish(stack: Stack, sim: Simulation, accounts: dict[str, tuple[str, str]],
                   router: Router, msgs: list[SimMessage] | None = None) -> int:
    # The admin account is not bound to a client id: give its connections ids of their own.
    ids = {k: f"sim-test-{sim.scenario.seed}-{k}" for k, (user, _) in accounts.items()
           if user == stack.mqtt_credentials("admin")[0]}
    stats = await asyncio.to_thread(publish_simulation, stack,
                                    msgs if msgs is not None else sim.messages(), router,
                                    accounts, client_ids=ids)
    return stats.total


async def test_tiny_scenario_rows_match_the_generator(stack: Stack, settings: Settings,
                                                      db_url: str, uid: str) -> None:
    reg = tiny_city(prefix=f"{uid}-")
    _import(db_url, reg)
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)
    # The test ingestor has a topic prefix of its own; the admin account may write it.
    s = ingest_settings(settings, timezone=zone_holding(start))
    sim = Simulation(_scenario(start), reg, prefix=s.topic_prefix)
    ids = sim.device_ids
    accounts = accounts_for(mode="pool", pool_size=2, sim=stack.mqtt_credentials("admin"))
    router = Router(mode="pool", pool_size=2, prefix=s.topic_prefix)
    msgs = list(sim.messages())
    own_bad = sum(1 for m in msgs if m.fault in (MALFORMED, OVERSIZED) and f"/{uid}-" in m.topic)
    assert own_bad
    async with running_ingestor(stack, s, db_url):
        sent = await _publish(stack, sim, accounts, router, msgs)
        truth = sim.truth_document()
        expected = truth["messages"]["expected_rows"]
        faults = truth["messages"]["faults"]
        assert sent == sum(expected.values()) + sum(v for k, v in faults.items()
                                                    if k != "out_of_order")
        assert faults.get("duplicate") and faults.get("malformed") and faults.get("oversized")
        # Barrier: every clean row, and the dead letters of faulty messages on our devices'
        # own topics (malformed, oversized), so nothing is still in flight when we compare.

        async def settled() -> bool:
            rows = await _rows(db_url, ids)
            dead = await asyncio.to_thread(count, db_url, "dead_letters", "topic LIKE %s",
                                           (f"%/{uid}-%",))
            return rows == expected and dead == own_bad

        try:
            await await_until(settled, timeout=60, what=f"rows {expected}")
        except AssertionError:
            got = await _rows(db_url, ids)
            reasons = await asyncio.to_thread(_dead_reasons, db_url, uid)
            raise AssertionError(f"rows {got} != {expected}; dead letters {reasons}") from None
    assert await _rows(db_url, ids) == expected  # duplicates made no second row
    dead = await asyncio.to_thread(count, db_url, "dead_letters",
                                   "reason = 'oversized' AND topic LIKE %s", (f"%/{uid}-%",))
    assert dead >= 1


async def test_per_device_connections_authenticate(stack: Stack, settings: Settings,
                                                   db_url: str, uid: str) -> None:
    if stack.settings.external_broker:
        pytest.skip("per-device accounts are applied on the local broker only")
    reg = tiny_city(prefix=f"{uid}-")
    _import(db_url, reg)
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
    s = ingest_settings(settings, timezone=zone_holding(start))
    sim = Simulation(_scenario(start, duration="20m", faults={}, formats={}), reg,
                     prefix=s.topic_prefix)
    ids = sim.device_ids
    with psycopg.connect(db_url, autocommit=True) as conn:
        change = creds.issue(conn, ids)
        mine = [a for a in creds.broker_accounts(conn, s.topic_prefix) if a.username in ids]
    passwords = {c.device_id: c.password for c in change.issued}
    assert set(passwords) == set(ids)
    _merge_broker_accounts(stack, add=mine)
    try:
        host, port = stack.broker_address()
        sim_user = stack.mqtt_credentials("admin")
        accounts = accounts_for(mode="per-device", pool_size=1, sim=sim_user,
                                device_passwords=passwords)
        router = Router(mode="per-device", pool_size=1, prefix=s.topic_prefix,
                        device_ids=ids)
        # The broker reloads its accounts asynchronously: wait until a device gets in.
        probe = {ids[0]: (ids[0], passwords[ids[0]])}

        def can_connect(accts: dict[str, tuple[str, str]]) -> bool:
            fleet = Fleet(host, port, accts)  # a device's client id is its id
            try:
                fleet.connect(timeout=5)
            except PublishError:
                return False
            fleet.close()
            return True

        async def probe_ok() -> bool:
            return await asyncio.to_thread(can_connect, probe)

        await await_until(probe_ok, timeout=20, what="the broker to accept a device account")
        wrong = {ids[0]: (ids[0], passwords[ids[0]] + "x")}
        assert not await asyncio.to_thread(can_connect, wrong)
        async with running_ingestor(stack, s, db_url):
            await _publish(stack, sim, accounts, router)
            expected = sim.truth_document()["messages"]["expected_rows"]

            async def all_rows() -> bool:
                return bool(await _rows(db_url, ids) == expected)

            await await_until(all_rows, timeout=60, what=f"rows {expected}")
    finally:
        _merge_broker_accounts(stack, remove={a.username for a in mine})


def _merge_broker_accounts(stack: Stack, *, add: list[BrokerAccount] | None = None,
                           remove: set[str] | None = None) -> None:
    """Add/remove our device accounts, keeping the other tests' (the broker is shared)."""
    current: list[BrokerAccount] = []
    path = stack.device_accounts_file
    if path.exists():
        current = [BrokerAccount(d["username"], d["password_hash"], tuple(d["read"]),
                                 tuple(d["write"]), d.get("client_id", d["username"]))
                   for d in json.loads(path.read_text())]
    drop = (remove or set()) | {a.username for a in add or []}
    merged = [a for a in current if a.username not in drop] + list(add or [])
    stack.write_broker_auth(merged)


def _dead_reasons(db_url: str, uid: str) -> list[tuple[str, str, int]]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute("SELECT reason, min(detail), count(*) FROM dead_letters"
                            " WHERE topic LIKE %s GROUP BY reason", (f"%/{uid}-%",)).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]
