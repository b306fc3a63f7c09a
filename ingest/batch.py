"""A batch: readings per table and dead letters, committed together, acknowledged together."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

from devices.readings import TABLE_OF, Reading

DeadLetterRow = tuple[datetime, str, str | None, str, str, bytes, int]


class Batch:
    """Messages whose readings are written in one transaction; ``done`` resolves on commit."""

    __slots__ = ("dead", "done", "messages", "n_messages", "n_readings", "opened",
                 "refused", "rows")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.rows: dict[str, list[tuple[Any, ...]]] = {}
        self.dead: list[DeadLetterRow] = []
        # Accepted messages with their readings, kept to isolate a bad row if COPY fails.
        self.messages: list[tuple[str, bytes, datetime, list[Reading]]] = []
        self.n_messages = 0
        self.n_readings = 0
        # Accepted messages that the writer dead-lettered (conflict, db_rejected).
        self.refused = 0
        self.opened = time.monotonic()
        self.done: asyncio.Future[None] = loop.create_future()

    def add(self, topic: str, payload: bytes, received_at: datetime,
            readings: list[Reading]) -> None:
        """Add an accepted message's readings."""
        rows = self.rows
        for r in readings:
            table = TABLE_OF[type(r)]
            bucket = rows.get(table)
            if bucket is None:
                bucket = rows[table] = []
            bucket.append(r)
        self.messages.append((topic, payload, received_at, readings))
        self.n_messages += 1
        self.n_readings += len(readings)

    def add_dead(self, row: DeadLetterRow) -> None:
        """Add a rejected message."""
        self.dead.append(row)
        self.n_messages += 1
