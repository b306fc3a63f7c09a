"""Answer formats: JSON by default; CSV for every answer made of rows (time series, lists).

The format comes from ``?format=`` when given, otherwise from the ``Accept`` header with its
q-values (RFC 9110 §12.5.1): each format takes the quality of the most specific media range
that matches it, the best quality wins and JSON wins a tie. A request that accepts none of
the formats of its route gets ``406``, as does ``format=csv`` on a route that answers a single
object (JSON only). CSV cells are written as the JSON answer would say them: ``true``/
``false``, empty for null, nested values as compact JSON.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import orjson
from fastapi import Query, Request
from fastapi.responses import Response

from api.errors import ApiError

JSON_MEDIA = "application/json"
CSV_MEDIA = "text/csv; charset=utf-8"
ROW_FORMATS = ("json", "csv")
_MEDIA_OF_FORMAT = {"json": ("application", "json"), "csv": ("text", "csv")}


def _media_ranges(accept: str) -> list[tuple[str, str, float]]:
    """``(type, subtype, q)`` of each well-formed media range of an Accept header."""
    out = []
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        kind, sep, sub = media.lower().partition("/")
        if not sep or not kind or not sub:
            continue
        q = 1.0
        for p in params:
            name, _, value = p.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = -1.0
        if 0.0 <= q <= 1.0:
            out.append((kind, sub, q))
    return out


def _quality(fmt: str, ranges: list[tuple[str, str, float]]) -> float:
    kind, sub = _MEDIA_OF_FORMAT[fmt]
    best: tuple[int, float] = (-1, 0.0)  # (specificity, q) of the most specific match
    for rk, rs, q in ranges:
        if (rk, rs) == (kind, sub):
            spec = 2
        elif rk == kind and rs == "*":
            spec = 1
        elif (rk, rs) == ("*", "*"):
            spec = 0
        else:
            continue
        if spec > best[0]:
            best = (spec, q)
    return best[1]


def negotiate(request: Request, offers: Sequence[str]) -> str:
    """The format (``json`` or ``csv``) to answer in, among ``offers`` (JSON first)."""
    fmt = request.query_params.get("format")
    if fmt is not None:
        if fmt not in ROW_FORMATS:
            raise ApiError(422, "invalid_parameter", {
                "param": "format", "message": f"format must be one of {', '.join(offers)}"})
        if fmt not in offers:
            raise ApiError(406, "not_acceptable", f"this route answers {', '.join(offers)} "
                           "only: CSV is for time series and lists")
        return fmt
    ranges = _media_ranges(request.headers.get("accept", ""))
    if not ranges:
        return offers[0]
    scored = [(_quality(f, ranges), f) for f in offers]
    best = max(s for s, _ in scored)
    if best <= 0.0:
        media = " or ".join("/".join(_MEDIA_OF_FORMAT[f]) for f in offers)
        raise ApiError(406, "not_acceptable", f"this route answers {media}; the Accept header "
                       "allows none of them")
    return next(f for s, f in scored if s == best)


async def rows_format(request: Request, format: Annotated[
        Literal["json", "csv"] | None, Query(
            description="`json` or `csv`; default from the `Accept` header (q-values), "
            "JSON when it allows both")] = None) -> str:
    """Dependency of the routes that answer rows: the negotiated format (checked before any
    query runs)."""
    chosen = negotiate(request, ROW_FORMATS)
    request.state.answer_format = chosen
    return chosen


async def json_only(request: Request, format: Annotated[
        str | None, Query(max_length=8, json_schema_extra={"enum": ["json"]},
                          description="`json` only: this route answers one object (CSV is "
                          "for time series and lists: `csv` here is 406)")] = None) -> str:
    """Dependency of the routes that answer one object: 406 when JSON is not acceptable."""
    return negotiate(request, ("json",))


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list | tuple):
        return orjson.dumps(value).decode()
    return value


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A header line and one line per row, cells as the JSON answer says them."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in columns])
    return buf.getvalue()


def series_response(request: Request, meta: dict[str, Any], rows: Sequence[dict[str, Any]],
                    columns: Sequence[str], *, filename: str) -> Response:
    """``{**meta, "data": rows}`` as JSON, or the rows as CSV with a header line."""
    fmt = getattr(request.state, "answer_format", None) or negotiate(request, ROW_FORMATS)
    if fmt == "csv":
        return Response(to_csv(rows, columns), media_type=CSV_MEDIA, headers={
            "Content-Disposition": f'attachment; filename="{filename}.csv"'})
    return Response(orjson.dumps({**meta, "data": list(rows)}), media_type=JSON_MEDIA)


rows_response = series_response  # lists answer like time series: meta + rows, or CSV

FORMAT_DOC = ("Answers JSON by default, CSV with `?format=csv` or an `Accept` header that "
              "prefers `text/csv` (one line per row, header line).")


#: The CSV content of a 200 answer in the OpenAPI document.
CSV_CONTENT: dict[str, Any] = {"text/csv": {"schema": {"type": "string"}}}
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {JSON_MEDIA: {}, "text/csv": {"schema": {"type": "string"},
                                                   "example": "start,end,value\n"}}}}
