"""Request dependencies: a pooled connection, the authenticated token, time parameters."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import psycopg
from fastapi import Depends, Query, Request
from psycopg_pool import AsyncConnectionPool

from api.errors import ApiError, invalid
from api.output import rows_format
from api.timeq import BUCKETS, INSTANT_PATTERN, Buckets, make_buckets, parse_instant, parse_tz
from api.tokens import Scope, TokenInfo, authenticate
from beffroi.settings import Settings

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # device and site ids (registry CHECKs)
#: Free text of a filter: no control character (NUL included), which no topic or name holds.
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]+$"


async def get_conn(request: Request) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """One pooled autocommit connection per request (auth and route share it)."""
    pool: AsyncConnectionPool = request.app.state.pool
    try:
        async with pool.connection(timeout=5) as conn:
            await conn.set_autocommit(True)
            yield conn
    except psycopg.errors.QueryCanceled as exc:
        raise statement_cancelled(exc, request.app.state.settings) from exc
    except psycopg.OperationalError as exc:
        raise ApiError(503, "unavailable", "database unreachable") from exc


def statement_cancelled(exc: psycopg.errors.QueryCanceled, settings: Settings) -> ApiError:
    """The 503 of a query PostgreSQL cancelled: past the statement timeout (a range too
    large to compute in time), or by an operator."""
    if "statement timeout" in str(exc):
        # the dashboard (static/js/dom.js) recognises these words: a range too large
        return ApiError(503, "unavailable", (
            f"the query ran longer than the {settings.api_statement_timeout_s:g} s statement "
            "timeout and was cancelled: ask a shorter range or a larger bucket (or "
            "source=auto, which reads the rollups)"))
    return ApiError(503, "unavailable", "the query was cancelled by the database; retry")


Conn = Annotated[psycopg.AsyncConnection[Any], Depends(get_conn)]


async def get_settings(request: Request) -> Settings:
    """The process settings."""
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def require(scope: Scope) -> Callable[..., Awaitable[TokenInfo]]:
    """A dependency that checks the bearer token carries ``scope``."""

    async def check(request: Request, conn: Conn) -> TokenInfo:
        header = request.headers.get("authorization", "")
        kind, _, token = header.partition(" ")
        challenge = {"WWW-Authenticate": "Bearer"}
        if kind.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", "missing bearer token", challenge)
        token = token.strip()
        if len(token) > 200:
            raise ApiError(401, "unauthorized", "invalid token", challenge)
        info = await authenticate(conn, token)
        if info is None:
            raise ApiError(401, "unauthorized", "unknown or revoked token", challenge)
        if not info.allows(scope):
            raise ApiError(403, "forbidden", f"this route needs the {scope.value!r} scope")
        request.state.token = info
        return info

    return check


Reader = Annotated[TokenInfo, Depends(require(Scope.READ))]


@dataclass(frozen=True)
class Pagination:
    """limit/offset of a list."""

    limit: int
    offset: int


RowsFormat = Annotated[str, Depends(rows_format)]


async def pagination(_: RowsFormat,
               limit: Annotated[int, Query(ge=1, le=1000, description="rows per page")] = 100,
               offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> Pagination:
    """Pagination parameters (a list answers JSON or CSV, as a time series)."""
    return Pagination(limit, offset)


Page = Annotated[Pagination, Depends(pagination)]


FromQuery = Annotated[str, Query(
    alias="from", max_length=40, pattern=INSTANT_PATTERN, examples=["2025-11-15"],
    description="start: ISO 8601 date (local midnight) or date-time (`2025-11-15T08:00`, "
    "seconds and fraction optional; naive times are local, `Z` or `+01:00` absolute), "
    "years 2000 to 2099")]
ToQuery = Annotated[str, Query(max_length=40, pattern=INSTANT_PATTERN, examples=["2025-11-16"],
                               description="end (exclusive), same forms as from; after from")]
TzQuery = Annotated[str | None, Query(
    max_length=64, examples=["Europe/Paris"],
    description="IANA time zone of day/week/month buckets and of naive times; default from "
    "the settings (the schema lists the names this server knows)")]


def time_range(buckets: tuple[str, ...] = BUCKETS) -> Callable[..., Awaitable[Buckets]]:
    """The dependency of a time series accepting ``buckets`` (its schema enumerates them).
    Like the other small dependencies it is a coroutine: FastAPI runs a plain function in
    its thread pool, a hop that costs more than the work."""
    default = "1h" if "1h" in buckets else buckets[0]

    async def dependency(settings: SettingsDep, _: RowsFormat, from_: FromQuery, to: ToQuery,
                         bucket: str = default, tz: TzQuery = None) -> Buckets:
        if bucket not in buckets:
            raise invalid(f"bucket must be one of {', '.join(buckets)}", param="bucket")
        zone = parse_tz(tz, settings.timezone)
        start = parse_instant(from_, zone, param="from")
        end = parse_instant(to, zone, param="to")
        return make_buckets(start, end, bucket, zone)

    # The enumeration is this route's (annotations are strings here: set the object).
    dependency.__annotations__["bucket"] = Annotated[str, Query(
        max_length=8, examples=[default], description=f"one of {', '.join(buckets)}",
        json_schema_extra={"enum": list(buckets)})]
    return dependency


Range = Annotated[Buckets, Depends(time_range())]
HOURLY_AND_LONGER = ("1h", "1d", "1w", "1mo")


def only_buckets(b: Buckets, allowed: tuple[str, ...], why: str) -> None:
    """422 unless the request's bucket is one of ``allowed``."""
    if b.bucket not in allowed:
        raise invalid(f"bucket must be one of {', '.join(allowed)}: {why}", param="bucket")
