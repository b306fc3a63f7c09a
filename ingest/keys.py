"""Daily pseudonymisation keys: created on demand, shared by workers, destroyed after the day."""

from __future__ import annotations

import logging
import os
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg

from devices.errors import TOO_OLD, DecodeError

log = logging.getLogger(__name__)

# Create tomorrow's key this long before local midnight, so that every worker holds it when
# the day turns (the key's life grows by at most this much).
PREFETCH = timedelta(minutes=2)
# Per-client readings older than this are refused (``too_old``) whatever key is held: a key
# serves one local day, and per-client rows live at most 24 h (CNIL).
PER_CLIENT_MAX_AGE = timedelta(hours=24)


class KeyRing:
    """The keys in force, by local day; ``key_for`` is what ``MacHasher`` calls."""

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self.keys: dict[date, bytes] = {}

    def key_for(self, at: datetime) -> bytes:
        """Key of the local day of ``at``.

        A reading of a day whose key is destroyed is refused (``too_old``): hashing it with
        a newer key would make it linkable to that day's clients. A day not begun for this
        worker (its key not fetched yet) takes the newest key.
        """
        day = at.astimezone(self.tz).date()
        key = self.keys.get(day)
        if key is not None:
            return key
        if not self.keys:
            raise RuntimeError("no pseudonymisation key loaded")
        if day < min(self.keys):
            raise DecodeError(TOO_OLD, f"per-client reading of {day.isoformat()} (local day): "
                              "the pseudonymisation key of that day is destroyed once the "
                              "day has ended (24 h rule)")
        return self.keys[max(self.keys)]

    async def refresh(self, conn: psycopg.AsyncConnection, now: datetime) -> None:
        """Ensure today's key (and tomorrow's near midnight); destroy keys of ended days."""
        local = now.astimezone(self.tz)
        today = local.date()
        wanted = [today]
        next_midnight = datetime.combine(today + timedelta(days=1), datetime.min.time(),
                                         self.tz)
        if next_midnight - local <= PREFETCH:
            wanted.append(today + timedelta(days=1))
        async with conn.transaction():
            await conn.execute("DELETE FROM privacy_keys WHERE day < %s", (today,))
            for day in wanted:
                await conn.execute(
                    "INSERT INTO privacy_keys (day, key) VALUES (%s, %s) "
                    "ON CONFLICT (day) DO NOTHING", (day, os.urandom(32)))
            cur = await conn.execute("SELECT day, key FROM privacy_keys WHERE day >= %s",
                                     (today,))
            rows = await cur.fetchall()
        self.keys = {d: bytes(k) for d, k in rows}
