"""``beffroi maintain``: rollups, wifi session aggregates and retention, once."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from typing import Any

from beffroi.context import CommandError, Context


def register(sub: Any) -> None:
    """Add ``maintain``."""
    p = sub.add_parser("maintain", help="update rollups, aggregate wifi sessions, apply retention",
                       description="Run the maintenance job once (the API also runs it every "
                       "minute): bring the hourly rollups up to the last whole hour "
                       "(re-rolling the last 24 hours for late data), aggregate wifi sessions "
                       "then delete those older than 24 hours, drop raw chunks past their "
                       "retention (BEFFROI_RETENTION_*). See docs/rollups.md.")
    p.add_argument("--from", dest="from_", metavar="TIME", default=None,
                   help="also recompute the rollups from this ISO date-time (UTC unless an "
                   "offset is given), e.g. after replaying or importing old data")
    p.add_argument("--rollups-only", action="store_true",
                   help="only the rollups: no session aggregation, no retention")
    p.set_defaults(handler=_maintain)


def _parse(value: str) -> datetime:
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise CommandError(f"--from: {value!r} is not an ISO date-time") from exc
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _maintain(ctx: Context, args: argparse.Namespace) -> int:
    import psycopg

    from api.maintenance import run_once

    since = _parse(args.from_) if args.from_ else None

    async def go() -> int:
        async with await psycopg.AsyncConnection.connect(
                ctx.database_url(), autocommit=True,
                application_name="beffroi-maintain") as conn:
            report = await run_once(conn, ctx.settings, recompute_from=since,
                                    rollups_only=args.rollups_only)
        if not report.ran:
            print("another process is running the maintenance job; nothing done")
            return 0
        if report.last_seen_reconciled:
            print(f"device health: {report.last_seen_reconciled} device(s) brought forward "
                  "from readings that did not come through the ingestor")
        for name, (a, b) in report.rolled.items():
            print(f"rolled up {name}: {a.isoformat()} .. {b.isoformat()}")
        if report.late_sessions:
            print(f"added {report.late_sessions} late wifi session row(s) to hours or days "
                  "already aggregated")
        for day in report.days_aggregated:
            print(f"aggregated wifi sessions of {day}")
        for table, n in report.dropped_chunks.items():
            if n:
                print(f"dropped {n} chunk(s) of {table}")
        print(f"deleted {report.deleted_sessions} wifi session row(s) older than "
              f"{ctx.settings.retention_wifi_sessions_hours} h, "
              f"{report.deleted_keys} expired privacy key(s)")
        if ctx.settings.opendata_publish_daily and not args.rollups_only:
            from beffroi.commands.opendata import publish_if_due

            if await publish_if_due(ctx.database_url(), ctx.settings):
                print(f"published the open-data package in {ctx.settings.opendata_path()}")
        return 0

    return asyncio.run(go())
