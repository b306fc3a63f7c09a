"""Operators (scope ``operate``): scenario runs and dead-lettered messages."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field

from api.db import fetch_all, iso
from api.deps import ID_PATTERN, TEXT_PATTERN, Conn, Page, RowsFormat, SettingsDep, TzQuery, require
from api.errors import (
    ERROR_RESPONSES,
    NOT_FOUND_RESPONSE,
    ApiError,
    error_response,
    invalid,
    not_found,
)
from api.metrics.dead_letters import grouped as dead_letter_counts_sql
from api.output import CSV_CONTENT, json_only, rows_response
from api.runs import MAX_DURATION_S, MAX_SPEED, RunConflict, RunManager, RunNotFound
from api.timeq import INSTANT_PATTERN, parse_instant, parse_tz
from api.tokens import Scope, TokenInfo
from beffroi.endpoints import MissingSetting
from simulators.scenario import Scenario, ScenarioError

#: A duration as ``parse_duration`` reads it (90s, 15m, 2h, 1d, 1h30m).
DURATION_PATTERN = r"^([0-9]{1,5}d)?([0-9]{1,6}h)?([0-9]{1,7}m)?([0-9]{1,9}s)?$"


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # A manager set on app.state before start-up (tests) is used as is.
    manager: RunManager | None = getattr(app.state, "runs", None)
    if manager is None:
        manager = RunManager.from_settings(app.state.settings)
        app.state.runs = manager
    try:
        yield
    finally:
        await asyncio.to_thread(manager.shutdown)


_CONFLICT: dict[int | str, dict[str, Any]] = {409: error_response(
    "too many active runs, or the run is not active", "conflict",
    "2 run(s) already active (at most 2): stop one first")}
router = APIRouter(prefix="/operate", tags=["operate"], lifespan=_lifespan,
                   responses={**ERROR_RESPONSES, 403: error_response(
                       "the token lacks the scope", "forbidden",
                       "this route needs the 'operate' scope")})
JSON_ONLY = [Depends(json_only)]

Operator = Annotated[TokenInfo, Depends(require(Scope.OPERATE))]
RunId = Annotated[str, Path(pattern=r"^[0-9a-f]{12}$", examples=["3f9c2a7b1d04"])]

#: Payload bytes shown per dead letter by default, and at most.
PAYLOAD_SHOWN = 1024
PAYLOAD_SHOWN_MAX = 65536
DEFAULT_COUNT_RANGE = timedelta(days=1)


def _runs(request: Request) -> RunManager:
    manager: RunManager = request.app.state.runs
    return manager


Runs = Annotated[RunManager, Depends(_runs)]


# -- scenarios and runs ---------------------------------------------------------------------

def _scenario_row(name: str, sc: Scenario | ScenarioError) -> dict[str, Any]:
    if isinstance(sc, ScenarioError):
        return {"name": name, "valid": False, "error": str(sc)}
    return {"name": name, "valid": True, "description": sc.description,
            "start": sc.start, "duration_s": sc.duration, "timezone": sc.timezone,
            "speed": sc.speed, "seed": sc.seed, "city": sc.city.source,
            "events": len(sc.events)}


SCENARIO_COLUMNS = ("name", "valid", "description", "start", "duration_s", "timezone", "speed",
                    "seed", "city", "events", "error")


@router.get("/scenarios", summary="The named scenarios an operator can run",
            responses={200: {"content": {**CSV_CONTENT,
                                         "application/json": {"example": {
                "count": 1, "data": [{"name": "weekday", "valid": True,
                                      "description": "a normal Tuesday in the demo city",
                                      "start": "last tuesday 00:00", "duration_s": 86400,
                                      "timezone": "Europe/Paris", "speed": 600.0,
                                      "seed": 20251118, "city": "demo", "events": 1}]}}}}})
async def list_scenarios(request: Request, _: Operator, runs: Runs,
                         _fmt: RowsFormat) -> Response:
    """Shipped scenarios (`simulators/scenarios/*.yaml`) with their defaults; an invalid
    file is listed with `valid: false` and why. JSON or CSV."""
    found = await asyncio.to_thread(runs.scenarios)
    rows = [_scenario_row(n, sc) for n, sc in found.items()]
    return rows_response(request, {"count": len(rows)}, rows, SCENARIO_COLUMNS,
                         filename="scenarios")


DurationText = Annotated[str, Field(pattern=DURATION_PATTERN, min_length=2, max_length=20)]


class RunRequest(BaseModel):
    """What to run; every field but ``scenario`` defaults to the scenario's own."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"scenario": "weekday", "speed": 600, "duration": "2h", "seed": 7},
        {"scenario": "stress", "speed": "max"}]})

    scenario: str = Field(pattern=ID_PATTERN, max_length=64,
                          description="a name from /v1/operate/scenarios")
    speed: Annotated[float, Field(gt=0, le=MAX_SPEED)] | Literal["max"] | None = Field(
        None, description="1 = real time, N = N times faster, 'max' = as fast as possible")
    duration: DurationText | Annotated[int, Field(ge=1, le=MAX_DURATION_S)] | None = Field(
        None, description=f"simulated time: 90s, 15m, 2h, 1d, 1h30m or seconds; at most "
        f"{MAX_DURATION_S // 86400} days")
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    start: str | None = Field(
        None, max_length=40, pattern=TEXT_PATTERN,
        description="simulated start, local time: '2025-11-18 07:00', "
        "'yesterday 00:00', 'last saturday 07:00'")


_RUN_EXAMPLE = {
    "id": "3f9c2a7b1d04", "scenario": "weekday", "state": "running", "speed": 600.0,
    "duration_s": 86400, "seed": 20251118, "sim_start": "2025-11-18T00:00:00+01:00",
    "sim_end": "2025-11-19T00:00:00+01:00", "sim_clock": "2025-11-18T07:42:10+01:00",
    "progress": 0.3209, "devices": 824,
    "sent": {"grid_meter": 23012, "parking_meter": 412, "parking_spot": 9120,
             "wifi_ap": 5310},
    "sent_total": 37854, "faults": {"duplicate": 181}, "rate": 823.4, "acked": None,
    "unacked": None, "started_at": "2025-11-25T10:00:00+00:00", "finished_at": None,
    "error": None}


@router.post("/runs", status_code=201, summary="Start a scenario run", dependencies=JSON_ONLY,
             responses={**_CONFLICT, 201: {"content": {"application/json": {
                 "example": _RUN_EXAMPLE}}},
                 404: error_response("no such scenario", "not_found",
                                     "no scenario 'weekend'"),
                 503: error_response("the database is unreachable, or the broker account "
                                     "is not configured", "unavailable",
                                     "database unreachable")})
async def start_run(body: RunRequest, _: Operator, runs: Runs) -> JSONResponse:
    """Publish a named scenario to the broker with the simulator's account, in a process of
    its own. At most 2 runs are active at once (409 beyond). The run's messages are the
    simulator's (`beffroi simulate run`): the ingestor stores them like any device's."""
    try:
        sc = await asyncio.to_thread(runs.scenario, body.scenario, speed=body.speed,
                                     duration=body.duration, seed=body.seed, start=body.start)
        run = await asyncio.to_thread(runs.start, sc)
    except RunNotFound:
        raise not_found("scenario", body.scenario) from None
    except ScenarioError as exc:
        raise ApiError(422, "invalid_parameter", {"param": "scenario",
                                                  "message": str(exc)}) from None
    except ValueError as exc:
        raise invalid(str(exc).removeprefix("Value error, ")) from None
    except RunConflict as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    except MissingSetting as exc:
        raise ApiError(503, "unavailable", str(exc)) from None
    return JSONResponse(run.to_dict(), status_code=201,
                        headers={"Location": f"/v1/operate/runs/{run.id}"})


RUN_COLUMNS = tuple(_RUN_EXAMPLE)


@router.get("/runs", summary="Runs started since the API started",
            responses={200: {"content": CSV_CONTENT}})
async def list_runs(request: Request, _: Operator, runs: Runs, page: Page) -> Response:
    """Active and recent runs (the last 50 ended ones), most recent first; JSON or CSV
    (`sent` and `faults` as JSON in their cells)."""
    rows = runs.list()
    return rows_response(request, {"count": len(rows), "limit": page.limit,
                                   "offset": page.offset},
                         rows[page.offset:page.offset + page.limit], RUN_COLUMNS,
                         filename="runs")


@router.get("/runs/{run_id}", summary="A run's progress", dependencies=JSON_ONLY,
            responses={**NOT_FOUND_RESPONSE, 200: {"content": {"application/json": {
                "example": _RUN_EXAMPLE}}}})
async def get_run(run_id: RunId, _: Operator, runs: Runs) -> dict[str, Any]:
    """State (`starting`, `running`, `finished`, `failed`, `stopped`), messages sent per
    family (handed to the broker; `acked` once ended), simulated clock, rate (messages/s),
    start and end times, and the error of a failed run."""
    try:
        return runs.get(run_id)
    except RunNotFound:
        raise not_found("run", run_id) from None


@router.post("/runs/{run_id}/stop", summary="Stop a run", dependencies=JSON_ONLY,
             responses={**_CONFLICT, **NOT_FOUND_RESPONSE})
async def stop_run(run_id: RunId, _: Operator, runs: Runs) -> dict[str, Any]:
    """Stops publishing, waits (a few seconds) for the broker to acknowledge what was sent
    and answers the run with its final counts and `state: stopped`. 409 if it already
    ended."""
    try:
        return await asyncio.to_thread(runs.stop, run_id)
    except RunNotFound:
        raise not_found("run", run_id) from None
    except RunConflict as exc:
        raise ApiError(409, "conflict", str(exc)) from None


# -- dead letters ---------------------------------------------------------------------------

Reason = Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_]{0,39}$",
                                     examples=["unknown_device"],
                                     description="reason code (docs/ingest.md)")]
DeviceFilter = Annotated[str | None, Query(pattern=ID_PATTERN, examples=["spot-gare-078"],
                                           description="device id")]
TopicPrefix = Annotated[str | None, Query(min_length=1, max_length=200, pattern=TEXT_PATTERN,
                                          examples=["city/parking/"],
                                          description="topics starting with this text (no "
                                          "control character)")]
FromParam = Annotated[str | None, Query(alias="from", max_length=40, pattern=INSTANT_PATTERN,
                                        examples=["2025-11-18"],
                                        description="received at or after (ISO 8601 date or "
                                        "date-time of 2000-2099; dates and naive times are "
                                        "local)")]
ToParam = Annotated[str | None, Query(max_length=40, pattern=INSTANT_PATTERN,
                                      examples=["2025-11-19"],
                                      description="received before (exclusive; after from)")]
TzParam = TzQuery


def _filters(settings: Any, reason: str | None, device: str | None, topic_prefix: str | None,
             from_: str | None, to: str | None, tz: str | None
             ) -> tuple[str, dict[str, Any], datetime | None, datetime | None]:
    zone = parse_tz(tz, settings.timezone)
    lo = parse_instant(from_, zone, param="from") if from_ is not None else None
    hi = parse_instant(to, zone, param="to") if to is not None else None
    if lo is not None and hi is not None and hi <= lo:
        raise invalid("'to' must be after 'from'", param="to")
    conditions = {"reason": ("reason = %(reason)s", reason),
                  "device": ("device_id = %(device)s", device),
                  "prefix": ("starts_with(topic, %(prefix)s)", topic_prefix),
                  "lo": ("received_at >= %(lo)s", lo), "hi": ("received_at < %(hi)s", hi)}
    given = {k: (cond, v) for k, (cond, v) in conditions.items() if v is not None}
    where = " AND ".join(["TRUE", *(cond for cond, _ in given.values())])
    return where, {k: v for k, (_, v) in given.items()}, lo, hi


def show_payload(data: bytes, stored_size: int, original_size: int) -> dict[str, Any]:
    """The payload as text when it is UTF-8 (a multi-byte character cut by the truncation
    is dropped), otherwise base64; with what was cut."""
    shown: dict[str, Any]
    text: str | None = None
    for cut in range(4 if len(data) < stored_size else 1):
        try:
            text = data[: len(data) - cut].decode("utf-8")
            break
        except UnicodeDecodeError:
            continue
    if text is not None:
        shown = {"payload_encoding": "utf-8", "payload": text}
    else:
        shown = {"payload_encoding": "base64",
                 "payload": base64.b64encode(data).decode("ascii")}
    return {**shown, "payload_size": original_size, "payload_stored": stored_size,
            "payload_truncated": len(data) < original_size}


DEAD_LETTER_COLUMNS = ("received_at", "topic", "device_id", "reason", "detail",
                       "payload_encoding", "payload", "payload_size", "payload_stored",
                       "payload_truncated")


@router.get("/dead-letters", summary="Browse dead-lettered messages",
            responses={200: {"content": {**CSV_CONTENT,
                                         "application/json": {"example": {
                "count": 1, "limit": 100, "offset": 0, "data": [{
                    "received_at": "2025-11-18T10:02:11.120000+00:00",
                    "topic": "city/parking/spot-gare-078/state", "device_id": "spot-gare-078",
                    "reason": "invalid_json", "detail": "Expecting value: line 1 column 1",
                    "payload_encoding": "utf-8", "payload": "{\"state\": ",
                    "payload_size": 10, "payload_stored": 10,
                    "payload_truncated": False}]}}}}})
async def dead_letters(request: Request, conn: Conn, _: Operator, settings: SettingsDep,
                       page: Page,
                       reason: Reason = None, device: DeviceFilter = None,
                       topic_prefix: TopicPrefix = None, from_: FromParam = None,
                       to: ToParam = None, tz: TzParam = None,
                       payload_max: Annotated[int, Query(
                           ge=0, le=PAYLOAD_SHOWN_MAX,
                           description="payload bytes shown per message")] = PAYLOAD_SHOWN,
                       ) -> Response:
    """Most recent first, filtered by reason, device, topic prefix and reception time.
    Payloads are shown as text when they are UTF-8, otherwise base64 (`payload_encoding`),
    cut at `payload_max` bytes; the ingestor already keeps at most 4 KiB of each
    (`payload_size` is the original size), redacted as docs/ingest.md says ("What a dead
    letter keeps"): no MAC nor licence plate."""
    where, params, _lo, _hi = _filters(settings, reason, device, topic_prefix, from_, to, tz)
    total = await fetch_all(conn, f"SELECT count(*) AS n FROM dead_letters WHERE {where}",
                            params)
    rows = await fetch_all(conn, f"""
        SELECT received_at, topic, device_id, reason, detail, payload_size,
               octet_length(payload) AS stored, substring(payload FROM 1 FOR %(pmax)s) AS head
        FROM dead_letters WHERE {where}
        ORDER BY received_at DESC, topic, device_id, reason
        LIMIT %(limit)s OFFSET %(offset)s""",
                           {**params, "pmax": payload_max, "limit": page.limit,
                            "offset": page.offset})
    data = [{"received_at": iso(r["received_at"]), "topic": r["topic"],
             "device_id": r["device_id"], "reason": r["reason"], "detail": r["detail"],
             **show_payload(bytes(r["head"]), r["stored"], r["payload_size"])} for r in rows]
    return rows_response(request, {"count": int(total[0]["n"]), "limit": page.limit,
                                   "offset": page.offset}, data, DEAD_LETTER_COLUMNS,
                         filename="dead-letters")


@router.get("/dead-letters/counts", summary="Dead letters counted by reason and by device",
            dependencies=JSON_ONLY,
            responses={200: {"content": {"application/json": {"example": {
                "from": "2025-11-17T10:00:00+00:00", "to": "2025-11-18T10:00:00+00:00",
                "total": 42, "by_reason": [{"reason": "unknown_device", "count": 30},
                                           {"reason": "invalid_json", "count": 12}],
                "by_device": [{"device_id": "spot-gare-078", "count": 12,
                               "by_reason": {"invalid_json": 12}}]}}}}})
async def dead_letter_counts(conn: Conn, _: Operator, settings: SettingsDep,
                             reason: Reason = None, device: DeviceFilter = None,
                             topic_prefix: TopicPrefix = None, from_: FromParam = None,
                             to: ToParam = None, tz: TzParam = None,
                             top: Annotated[int, Query(ge=1, le=1000, description=
                                                       "devices listed, most rejected "
                                                       "first")] = 100) -> dict[str, Any]:
    """Over `[from, to)` (default: the last 24 hours), with the same filters as the list:
    the total, the count per reason, and the devices with the most rejections (each with
    its count per reason; `device_id` null gathers messages whose topic named no device)."""
    if from_ is None and to is None:
        now = datetime.now(UTC)
        to = now.isoformat()
        from_ = (now - DEFAULT_COUNT_RANGE).isoformat()
    where, params, lo, hi = _filters(settings, reason, device, topic_prefix, from_, to, tz)
    # The range grouped by device and reason once (whole days from the daily counts);
    # reasons and devices are ranked from those groups by window functions (three scans,
    # or a join of the groups to the ranked devices, made a month of a busy fleet queue
    # past 100 ms).
    groups = await dead_letter_counts_sql(conn, where, params, lo=lo, hi=hi,
                                          tz=ZoneInfo(settings.timezone),
                                          topic_filtered=topic_prefix is not None)
    rows = await fetch_all(conn, sql.SQL("""
        WITH g AS MATERIALIZED ({}),
        r AS (SELECT reason, sum(n) AS n, row_number() OVER (ORDER BY sum(n) DESC, reason) AS k
              FROM g GROUP BY reason),
        w AS (SELECT device_id, reason, n, sum(n) OVER (PARTITION BY device_id) AS dn FROM g),
        d AS (SELECT device_id, reason, n, dn,
                     dense_rank() OVER (ORDER BY dn DESC, device_id NULLS LAST) AS k FROM w)
        SELECT 'reason' AS part, NULL::text AS device_id, reason, n, k, NULL AS dn FROM r
        UNION ALL
        SELECT 'detail', device_id, reason, n, k, dn FROM d WHERE k <= %(top)s""").format(groups),
                           {**params, "top": top})
    by_reason = sorted((r for r in rows if r["part"] == "reason"), key=lambda r: int(r["k"]))
    per: dict[str | None, dict[str, int]] = {}
    ranked: dict[int, dict[str, Any]] = {}  # rank -> the device and its total
    for r in rows:
        if r["part"] == "detail":
            per.setdefault(r["device_id"], {})[r["reason"]] = int(r["n"])
            ranked[int(r["k"])] = {"device_id": r["device_id"], "n": r["dn"]}
    by_device = [ranked[k] for k in sorted(ranked)]
    return {"from": iso(lo), "to": iso(hi),
            "total": sum(int(r["n"]) for r in by_reason),
            "by_reason": [{"reason": r["reason"], "count": int(r["n"])} for r in by_reason],
            "by_device": [{"device_id": r["device_id"], "count": int(r["n"]),
                           "by_reason": dict(sorted(per.get(r["device_id"], {}).items()))}
                          for r in by_device]}
