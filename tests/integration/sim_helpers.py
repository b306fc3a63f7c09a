"""Publish a simulation through the real broker as ``beffroi simulate`` does, and count the
rows it landed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from beffroi.stack import Stack
from simulators.model import SimMessage
from simulators.publisher import Fleet, Router, RunStats, accounts_for, publish_stream
from tests.integration.mqtt_helpers import count


def publish_simulation(stack: Stack, messages: Iterable[SimMessage], router: Router,
                       accounts: Mapping[str, tuple[str, str]], *,
                       client_ids: Mapping[str, str] | None = None) -> RunStats:
    """Publish at full speed through a Fleet; fail unless the broker acknowledged every
    message."""
    host, port = stack.broker_address()
    fleet = Fleet(host, port, accounts, client_ids=client_ids)
    fleet.connect()
    try:
        stats = publish_stream(messages, fleet, router, speed=None)
    finally:
        fleet.close()
    assert not stats.interrupted and stats.unacked_at_end == 0
    return stats


def publish_pooled(stack: Stack, messages: Iterable[SimMessage], prefix: str,
                   name: str) -> RunStats:
    """Publish through two pooled admin connections with client ids ``<name>-<key>`` (the
    admin account is bound to no client id)."""
    accounts = accounts_for(mode="pool", pool_size=2, sim=stack.mqtt_credentials("admin"))
    router = Router(mode="pool", pool_size=2, prefix=prefix)
    return publish_simulation(stack, messages, router, accounts,
                              client_ids={k: f"{name}-{k}" for k in accounts})


async def rows_by_table(db_url: str, tables: Iterable[str], ids: list[str]) -> dict[str, int]:
    """How many rows each table holds for these devices."""
    return {t: await asyncio.to_thread(count, db_url, t, "device_id = ANY(%s)", (ids,))
            for t in tables}
