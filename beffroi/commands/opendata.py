"""``beffroi opendata publish``: write the open-data package of a period (docs/opendata.md)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from beffroi.context import CommandError, Context
from beffroi.settings import Settings

log = logging.getLogger("beffroi.opendata")


def register(sub: Any) -> None:
    """Add ``opendata``."""
    p = sub.add_parser("opendata", help="publish the open-data package",
                       description="Open data: parking places (schema-stationnement), parking "
                       "occupancy, public wifi use, electricity per district, NGSI-LD "
                       "entities and a Frictionless datapackage.json. See docs/opendata.md.")
    osub = p.add_subparsers(dest="opendata_command", required=True, metavar="ACTION")
    pub = osub.add_parser("publish", help="write the package of a period into a directory",
                          description="Write the package; the same period and data give "
                          "byte-identical files, and unchanged files are not rewritten.")
    pub.add_argument("--out", type=Path, default=None, metavar="DIR",
                     help="target directory (default: BEFFROI_OPENDATA_DIR, else "
                     "<state_dir>/opendata, which the API serves)")
    pub.add_argument("--from", dest="from_", metavar="TIME", default=None,
                     help="start: a local date (midnight) or an ISO date-time on a whole hour; "
                     "default: BEFFROI_OPENDATA_DAYS days before --to")
    pub.add_argument("--to", metavar="TIME", default=None,
                     help="end (excluded), same forms; default: the last local midnight")
    pub.set_defaults(handler=_publish)


def parse_time(value: str, tz: ZoneInfo, *, flag: str) -> datetime:
    """A date (local midnight) or an ISO date-time (local when naive)."""
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(0), tzinfo=tz)
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise CommandError(f"{flag}: {value!r} is not an ISO date or date-time") from exc
    return t if t.tzinfo else t.replace(tzinfo=tz)


def default_period(settings: Settings, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The ``opendata_days`` local days before the last local midnight."""
    tz = ZoneInfo(settings.timezone)
    today = (now or datetime.now(tz)).astimezone(tz).date()
    end = datetime.combine(today, time(0), tzinfo=tz)
    start = datetime.combine(today - timedelta(days=settings.opendata_days), time(0), tzinfo=tz)
    return start, end


async def publish(url: str, settings: Settings, out: Path, start: datetime,
                  end: datetime) -> list[str]:
    """Build and write the package; the names of the files written."""
    import psycopg

    from api.opendata.collect import Period
    from api.opendata.publish import build, write

    try:
        period = Period(start, end, ZoneInfo(settings.timezone))
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    async with await psycopg.AsyncConnection.connect(
            url, autocommit=True, application_name="beffroi-opendata") as conn:
        files = await build(conn, settings, period)
    result = write(out, files)
    log.info("opendata: %d file(s) written, %d unchanged, in %s", len(result.written),
             len(result.unchanged), out)
    return result.written


async def publish_if_due(url: str, settings: Settings, now: datetime | None = None) -> bool:
    """Publish the default period into the served directory unless the package there
    already ends at the last local midnight (``beffroi maintain``, once a day)."""
    start, end = default_period(settings, now)
    out = settings.opendata_path()
    try:
        doc = json.loads((out / "datapackage.json").read_text(encoding="utf-8"))
        if doc["temporal"]["end"] == end.isoformat():
            return False
    except (OSError, ValueError, KeyError, TypeError):
        pass  # nothing published yet, or unreadable: publish
    await publish(url, settings, out, start, end)
    return True


def _publish(ctx: Context, args: argparse.Namespace) -> int:
    settings = ctx.settings
    tz = ZoneInfo(settings.timezone)
    start, end = default_period(settings)
    if args.to:
        end = parse_time(args.to, tz, flag="--to")
        if not args.from_:
            start = end - timedelta(days=settings.opendata_days)
    if args.from_:
        start = parse_time(args.from_, tz, flag="--from")
    out = args.out or settings.opendata_path()
    asyncio.run(publish(ctx.database_url(), settings, out, start, end))
    print(f"open-data package for {start.isoformat()} .. {end.isoformat()} in {out}")
    return 0
