"""``beffroi api``: serve the HTTP API with uvicorn."""

from __future__ import annotations

import argparse
from typing import Any

from beffroi import endpoints
from beffroi.context import Context


def register(sub: Any) -> None:
    """Add ``api``."""
    p = sub.add_parser("api", help="serve the HTTP API (uvicorn)",
                       description="Serve the HTTP API. /health and /ready need no token; "
                       "the OpenAPI docs are at /docs. Needs BEFFROI_DATABASE_URL and "
                       "BEFFROI_BROKER_URL (BEFFROI_DATABASE_READ_URL: read from a standby).")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 in a container)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--maintenance-interval", type=float, default=60.0, metavar="SECONDS",
                   help="run the maintenance job (rollups, retention) this often; 0: never")
    p.set_defaults(handler=_api)


def _api(ctx: Context, args: argparse.Namespace) -> int:
    import uvicorn

    from api.main import create_app

    settings = ctx.client_settings
    endpoints.read_database_url(settings)  # each missing setting is an error now, not later
    endpoints.broker_address(settings)
    app = create_app(settings, maintenance_interval_s=args.maintenance_interval)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
