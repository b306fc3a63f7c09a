"""The HTTP API, built by ``create_app()`` (no work at import time)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool

from api.errors import install_error_handlers
from beffroi.settings import Settings
from beffroi.stack import Stack


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application: a connection pool opened at start-up, closed at shutdown."""
    settings = settings or Settings()
    db_url = Stack(settings).database_url()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = AsyncConnectionPool(db_url, min_size=1, max_size=10, open=False,
                                   kwargs={"application_name": "beffroi-api"})
        await pool.open(wait=False)
        app.state.pool = pool
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(title="Beffroi", version="0.1.0", lifespan=lifespan,
                  description="Aggregates of the city's connected equipment. Every route "
                  "under /v1 needs `Authorization: Bearer <token>` (see `beffroi tokens`); "
                  "errors are `{\"error\": code, \"detail\": ...}`. See docs/api.md.")
    app.state.settings = settings
    install_error_handlers(app)
    _include_routers(app)

    @app.get("/health", tags=["health"], summary="The process is alive")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", tags=["health"], summary="The database and the broker are reachable",
             responses={503: {"description": "a dependency is unreachable"}})
    async def ready() -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            async with app.state.pool.connection(timeout=2) as conn:
                await conn.execute("SELECT 1")
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unreachable: {type(exc).__name__}"
        host, port = settings.broker_address()
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2)
            writer.close()
            await writer.wait_closed()
            checks["broker"] = "ok"
        except (OSError, TimeoutError) as exc:
            checks["broker"] = f"unreachable: {type(exc).__name__}"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks},
                            status_code=200 if ok else 503)

    return app


def _include_routers(app: FastAPI) -> None:
    from api.routes import grid, inventory, parking, wifi

    for module in (inventory, parking, wifi, grid):
        app.include_router(module.router, prefix="/v1")
