"""The HTTP API, built by ``create_app()`` (no work at import time)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool

from api.db import register_types
from api.disconnect import CancelOnDisconnect
from api.errors import install_error_handlers
from api.lookups import RegistryCache, attach, listen
from api.openapi import install_openapi
from api.tokens import TokenCache
from beffroi import endpoints
from beffroi.gctune import tune_gc
from beffroi.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *,
               maintenance_interval_s: float = 0.0) -> FastAPI:
    """Build the application: a connection pool opened at start-up, closed at shutdown;
    with ``maintenance_interval_s`` > 0 the maintenance job (rollups, retention) runs that
    often in the background (``beffroi api`` uses 60 s). Requests read from
    ``BEFFROI_DATABASE_READ_URL`` when set (a hot standby), the job writes to
    ``BEFFROI_DATABASE_URL``; either missing raises :class:`MissingSetting`."""
    settings = settings or Settings()
    db_url = endpoints.database_url(settings)  # writes: the maintenance job
    read_url = endpoints.read_database_url(settings)  # requests: a standby when set

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        registry = RegistryCache()

        async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
            register_types(conn)
            attach(conn, registry)

        pool = AsyncConnectionPool(read_url, min_size=1, max_size=10, open=False,
                                   kwargs=connection_kwargs(settings), configure=configure)
        await pool.open(wait=False)
        app.state.pool = pool
        app.state.registry = registry
        tune_gc(settings.api_gc_threshold)
        tasks = [asyncio.create_task(listen(db_url, registry))]
        if maintenance_interval_s > 0:
            tasks.append(asyncio.create_task(
                _maintenance_loop(db_url, settings, maintenance_interval_s)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await pool.close()

    app = FastAPI(title="Beffroi", version="0.1.0", lifespan=lifespan,
                  description="Aggregates of the city's connected equipment. Every route "
                  "under /v1 needs `Authorization: Bearer <token>` (see `beffroi tokens`); "
                  "errors are `{\"error\": code, \"detail\": ...}`. See docs/api.md.")
    app.state.settings = settings
    app.state.tokens = TokenCache(settings.api_token_cache_s)
    install_error_handlers(app)
    app.add_middleware(CancelOnDisconnect)
    _include_routers(app)
    install_openapi(app)

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
        try:
            host, port = endpoints.broker_address(settings)
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2)
            writer.close()
            await writer.wait_closed()
            checks["broker"] = "ok"
        except endpoints.MissingSetting:
            checks["broker"] = "not configured (BEFFROI_BROKER_URL)"
        except (OSError, TimeoutError) as exc:
            checks["broker"] = f"unreachable: {type(exc).__name__}"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks},
                            status_code=200 if ok else 503)

    return app


def connection_kwargs(settings: Settings) -> dict[str, Any]:
    """How the requests' pooled connections are opened: autocommit from the start (a
    request reads, and switching it per checkout costs a lock each time), the statement
    timeout, and JIT compilation off unless ``api_jit`` (PostgreSQL compiles the
    expressions of a query it estimates costly: 0.1 to 0.4 s of compilation measured on a
    day of a district's raw readings, for no faster execution; docs/api.md, Performance)."""
    timeout_ms = round(settings.api_statement_timeout_s * 1000)
    jit = "on" if settings.api_jit else "off"
    return {"application_name": "beffroi-api", "autocommit": True,
            "options": f"-c statement_timeout={timeout_ms} -c jit={jit}"}


async def _maintenance_loop(db_url: str, settings: Settings, interval_s: float) -> None:
    """Run the maintenance job every ``interval_s`` (an advisory lock keeps concurrent API
    processes from running it together); a failure is logged and retried next time. It has
    its own connection: outside the requests' pool and their statement timeout."""
    from api.maintenance import run_once

    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                    db_url, autocommit=True, application_name="beffroi-maintenance",
                    connect_timeout=10) as conn:
                report = await run_once(conn, settings, max_steps=4)
            if report.rolled or report.deleted_sessions:
                log.info("maintenance: rolled %s, deleted %d wifi session rows",
                         sorted(report.rolled), report.deleted_sessions)
        except Exception:
            log.exception("maintenance job failed")
        await asyncio.sleep(interval_s)


def _include_routers(app: FastAPI) -> None:
    from api.routes import grid, inventory, parking, wifi

    for module in (inventory, parking, wifi, grid):
        app.include_router(module.router, prefix="/v1")
    app.include_router(__import__("api.routes.operate", fromlist=["router"]).router, prefix="/v1")
    from api.opendata.routes import router as opendata

    app.include_router(opendata)  # no token: docs/opendata.md

    from api.dashboard import install as install_dashboard

    install_dashboard(app)
