"""Serving the dashboard: its page and static files with a strict Content-Security-Policy,
the one-time sign-in exchange, and two small read routes its overview needs (rejections of
the last hour by reason, and the ingestor's counters) that no other route gives to a
``read`` token."""

from __future__ import annotations

import asyncio
import re
import urllib.request
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.dashboard.signin import SignInCodes
from api.db import fetch_all, iso
from api.deps import Conn, Reader, SettingsDep
from api.errors import ERROR_RESPONSES, ApiError
from beffroi.settings import Settings

REFRESH_S = 15
STATIC_PREFIX = "/dashboard/static"

page_router = APIRouter(include_in_schema=False)
read_router = APIRouter(prefix="/v1/dashboard", tags=["dashboard"], responses=ERROR_RESPONSES)


def static_dir() -> Path:
    """The dashboard's files, shipped as package data."""
    return Path(str(resources.files("api.dashboard") / "static"))


def content_security_policy(settings: Settings) -> str:
    """Same origin only: no inline script or style element, no third-party origin (but
    the configured tile server's, for images)."""
    img = "'self' data: blob:"
    if settings.dashboard_tile_url:
        parts = urlsplit(settings.dashboard_tile_url)
        img += f" {parts.scheme}://{parts.netloc}"
    return ("default-src 'none'; script-src 'self'; style-src 'self'; "
            f"img-src {img}; connect-src 'self'; font-src 'self'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'none'")


def _codes(request: Request) -> SignInCodes:
    codes: SignInCodes = request.app.state.signin_codes
    return codes


@page_router.get("/")
async def index() -> FileResponse:
    """The dashboard's single page (its routes live in the URL fragment)."""
    return FileResponse(static_dir() / "index.html", media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-cache"})


@page_router.get("/dashboard/config.json")
async def config(settings: SettingsDep) -> dict[str, Any]:
    """What the page needs to know before signing in."""
    return {"timezone": settings.timezone, "refresh_s": REFRESH_S,
            "tile_url": settings.dashboard_tile_url or None}


class SignIn(BaseModel):
    """A one-time code from a sign-in link."""

    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=8, max_length=64)


@page_router.post("/dashboard/signin")
async def sign_in(request: Request, body: SignIn) -> Response:
    """Exchange a one-time code for the token it stands for (once, within minutes)."""
    token = _codes(request).redeem(body.code)
    if token is None:
        raise ApiError(401, "unauthorized", "this sign-in link is unknown, used or expired")
    return JSONResponse({"token": token}, headers={"Cache-Control": "no-store"})


@read_router.post("/links", summary="A one-time sign-in link for the caller's own token",
                  status_code=201)
async def make_link(request: Request, _: Reader) -> dict[str, Any]:
    """The code of a link that signs the dashboard in with the token of this request; it
    works once, for a few minutes, on this API process. The token never appears in it."""
    token = request.headers["authorization"].partition(" ")[2].strip()
    code, ttl = _codes(request).issue(token)
    return {"code": code, "expires_in_s": int(ttl), "path": f"/#/connexion?code={code}"}


@read_router.get("/rejections", summary="Messages rejected recently, by reason")
async def rejections(conn: Conn, _: Reader,
                     minutes: Annotated[int, Query(ge=1, le=1440)] = 60) -> dict[str, Any]:
    """Dead-lettered messages of the last ``minutes`` counted by reason (no payload, no
    device: the `operate` routes show those)."""
    to = datetime.now(UTC)
    start = to - timedelta(minutes=minutes)
    rows = await fetch_all(conn, "SELECT reason, count(*) AS n FROM dead_letters "
                           "WHERE received_at >= %(lo)s AND received_at < %(hi)s "
                           "GROUP BY reason ORDER BY n DESC, reason", {"lo": start, "hi": to})
    return {"from": iso(start), "to": iso(to), "total": sum(int(r["n"]) for r in rows),
            "by_reason": [{"reason": r["reason"], "count": int(r["n"])} for r in rows]}


_METRIC = re.compile(r"^(beffroi_ingest_(?:messages|readings_written|rejected)_total)"
                     r"(?:\{[^}]*\})? ([0-9.e+]+)$", re.MULTILINE)


def _scrape(port: int) -> dict[str, float] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
            text = r.read(1 << 20).decode("utf-8", "replace")
    except OSError:
        return None
    out: dict[str, float] = {}
    for name, value in _METRIC.findall(text):
        out[name] = out.get(name, 0.0) + float(value)
    return out


@read_router.get("/ingest", summary="The ingestor's message counters, for its rate")
async def ingest_counters(_: Reader, settings: SettingsDep) -> dict[str, Any]:
    """The counters of the local ingestor's metrics endpoint (two answers some seconds
    apart give its rate); `available: false` when it does not answer."""
    port = settings.ingest_metrics_port
    got = await asyncio.to_thread(_scrape, port) if port else None
    at = iso(datetime.now(UTC))
    if got is None:
        return {"available": False, "at": at}
    return {"available": True, "at": at,
            "messages": got.get("beffroi_ingest_messages_total"),
            "readings": got.get("beffroi_ingest_readings_written_total"),
            "rejected": got.get("beffroi_ingest_rejected_total")}


def install(app: FastAPI) -> None:
    """Serve the dashboard from ``app``: page, static files, sign-in, read routes, and the
    security headers of the dashboard's responses."""
    app.state.signin_codes = SignInCodes()
    app.include_router(page_router)
    app.include_router(read_router)
    app.mount(STATIC_PREFIX, StaticFiles(directory=static_dir()), name="dashboard-static")
    settings: Settings = app.state.settings
    csp = content_security_policy(settings)

    app.add_middleware(SecurityHeaders, csp=csp)


class SecurityHeaders:
    """ASGI middleware: the security headers of the dashboard's answers (``/`` and
    ``/dashboard/...``). Plain ASGI, not ``@app.middleware``: Starlette's
    ``BaseHTTPMiddleware`` runs each request through extra tasks and memory streams, a cost
    every API request paid for headers only the dashboard's pages get."""

    def __init__(self, app: ASGIApp, csp: str) -> None:
        self.app = app
        self.headers = {"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff",
                        "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path != "/" and not path.startswith("/dashboard/"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.update(self.headers)
            await send(message)

        await self.app(scope, receive, send_with_headers)
