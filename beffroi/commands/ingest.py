"""``beffroi ingest``: MQTT to TimescaleDB."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from beffroi import endpoints
from beffroi.context import CommandError, Context


def register(sub: Any) -> None:
    """Add ``ingest``."""
    p = sub.add_parser(
        "ingest", help="run the MQTT ingestor (devices -> TimescaleDB)",
        description="Subscribe to every device topic with a persistent QoS 1 session, "
        "validate and decode each message, write readings in batches with COPY, and "
        "acknowledge each message only once its batch has committed. Rejected messages go "
        "to the dead_letters table with a reason. SIGTERM/Ctrl-C flush and stop cleanly.")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="worker processes splitting the stream, each subscribed to its "
                   "own topics (default 1; one per core is a good start, at most 6 unless "
                   "BEFFROI_INGEST_SHARED_SUBSCRIPTION is on)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="print a progress line every few seconds (default: when on a terminal)")
    p.set_defaults(handler=_ingest)


def _ingest(ctx: Context, args: argparse.Namespace) -> int:
    from beffroi.broker_auth import CONNECTION_PLACEHOLDER
    from ingest.mqtt import ConnectRefused, SubscriptionRefused
    from ingest.runner import TooManyWorkers, run
    from ingest.service import BrokerConfig

    settings = ctx.client_settings
    db_url = endpoints.database_url(settings)
    host, port = endpoints.broker_address(settings)
    user, password = endpoints.broker_credentials(settings, "ingest")
    most = settings.ingest_max_workers
    if CONNECTION_PLACEHOLDER in user and args.workers > most:
        raise CommandError(f"the broker has accounts for {most} ingestor workers "
                           "(BEFFROI_INGEST_MAX_WORKERS): raise it, then export the accounts "
                           "again (or restart the development stack)")
    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    try:
        return run(settings, db_url, BrokerConfig(host, port, user, password),
                   workers=max(1, args.workers), progress=progress)
    except (ConnectRefused, SubscriptionRefused, TooManyWorkers) as exc:
        raise CommandError(str(exc)) from exc
