"""One ingestor per client id: a PostgreSQL advisory lock held for the worker's life.

Two processes connecting with the same MQTT client id take the session from each other in
turn, each reconnection dropping the other's unacknowledged messages back into the queue:
a leftover worker of an earlier run and a new one would fight forever. Before connecting
to the broker, a worker takes a session-level advisory lock named after its client id on
the database every ingestor shares (across machines too), and waits while another process
holds it: the newcomer starts only once the other one has stopped.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from typing import Any

import psycopg

log = logging.getLogger(__name__)

#: First key of Beffroi's client-id locks ("bfci"); the second is the client id's CRC-32.
LOCK_CLASS = 0x62666369
WAIT_LOG_EVERY_S = 10.0


def lock_key(client_id: str) -> tuple[int, int]:
    """The advisory lock of ``client_id`` (two signed 32-bit keys)."""
    crc = zlib.crc32(client_id.encode())
    return LOCK_CLASS, crc - (1 << 32) if crc >= 1 << 31 else crc


class ClientIdClaim:
    """The lock on one client id, on a connection of its own (released when it closes)."""

    def __init__(self, db_url: str, client_id: str, *, poll_s: float = 0.5) -> None:
        self.db_url = db_url
        self.client_id = client_id
        self.poll_s = poll_s
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def acquire(self) -> None:
        """Wait until no other process holds the client id, then hold it."""
        self._conn = await psycopg.AsyncConnection.connect(
            self.db_url, autocommit=True, application_name=f"beffroi-ingest {self.client_id}")
        loop = asyncio.get_running_loop()
        waited_since = loop.time()
        last_log = waited_since - WAIT_LOG_EVERY_S
        while True:
            row = await (await self._conn.execute(
                "SELECT pg_try_advisory_lock(%s, %s)", lock_key(self.client_id))).fetchone()
            if row is not None and row[0]:
                if loop.time() - waited_since > self.poll_s:
                    log.info("client id %s is free: starting", self.client_id)
                return
            if loop.time() - last_log >= WAIT_LOG_EVERY_S:
                last_log = loop.time()
                log.warning("another ingestor is connected as %s (an earlier run still "
                            "stopping, or one started elsewhere): waiting until it stops",
                            self.client_id)
            await asyncio.sleep(self.poll_s)

    async def release(self) -> None:
        """Close the connection, which releases the lock."""
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
