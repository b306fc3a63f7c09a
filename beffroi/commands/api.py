"""``beffroi api``: serve the HTTP API with uvicorn."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from beffroi import endpoints
from beffroi.context import Context
from beffroi.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI


def register(sub: Any) -> None:
    """Add ``api``."""
    p = sub.add_parser("api", help="serve the HTTP API (uvicorn)",
                       description="Serve the HTTP API. /health and /ready need no token; "
                       "the OpenAPI docs are at /docs. Needs BEFFROI_DATABASE_URL and "
                       "BEFFROI_BROKER_URL (BEFFROI_DATABASE_READ_URL: read from a standby).")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 in a container)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--maintenance-interval", type=float, default=None, metavar="SECONDS",
                   help="run the maintenance job (rollups, retention) this often; 0: never "
                   "(default BEFFROI_API_MAINTENANCE_INTERVAL_S, 60)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="API processes (default BEFFROI_API_WORKERS, 1); see docs/api.md, "
                   "Performance, before using more than one")
    p.set_defaults(handler=_api)


def _api(ctx: Context, args: argparse.Namespace) -> int:
    import uvicorn

    from api.main import create_app

    settings = ctx.client_settings
    endpoints.read_database_url(settings)  # each missing setting is an error now, not later
    endpoints.broker_address(settings)
    interval = (settings.api_maintenance_interval_s if args.maintenance_interval is None
                else args.maintenance_interval)
    workers = settings.api_workers if args.workers is None else args.workers
    if workers < 1:
        raise SystemExit("--workers must be at least 1")
    if workers == 1:
        app = create_app(settings, maintenance_interval_s=interval)
        uvicorn.run(app, host=args.host, port=args.port, log_level="info",
                    access_log=settings.api_access_log)
        return 0
    # uvicorn starts each worker from an import string: the workers build their app from
    # the same environment (the options given here go to them through it).
    os.environ["BEFFROI_API_MAINTENANCE_INTERVAL_S"] = str(interval)
    uvicorn.run("beffroi.commands.api:worker_app", factory=True, workers=workers,
                host=args.host, port=args.port, log_level="info",
                access_log=settings.api_access_log)
    return 0


def worker_app() -> FastAPI:
    """The application of one worker process of ``beffroi api --workers N``: the settings
    as ``beffroi api`` reads them (the development stack's endpoints when in use). Each
    worker runs the maintenance job's loop; an advisory lock lets one run at a time."""
    from api.main import create_app

    settings = Context(Settings()).client_settings
    return create_app(settings, maintenance_interval_s=settings.api_maintenance_interval_s)
