"""``beffroi api``: serve the HTTP API with uvicorn."""

from __future__ import annotations

import argparse
from typing import Any

from beffroi.context import Context


def register(sub: Any) -> None:
    """Add ``api``."""
    p = sub.add_parser("api", help="serve the HTTP API (uvicorn)",
                       description="Serve the HTTP API. /health and /ready need no token; "
                       "the OpenAPI docs are at /docs.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--maintenance-interval", type=float, default=60.0, metavar="SECONDS",
                   help="run the maintenance job (rollups, retention) this often; 0: never")
    p.set_defaults(handler=_api)


def _api(ctx: Context, args: argparse.Namespace) -> int:
    import uvicorn

    from api.main import create_app

    app = create_app(ctx.settings, maintenance_interval_s=args.maintenance_interval)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
