"""JSON by default; CSV with ``Accept: text/csv`` or ``?format=csv`` on every time series."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from api.errors import invalid

CSV_MEDIA = "text/csv; charset=utf-8"


def wants_csv(request: Request) -> bool:
    """True when the client asked for CSV."""
    fmt = request.query_params.get("format")
    if fmt is not None:
        if fmt not in ("json", "csv"):
            raise invalid("format must be json or csv", param="format")
        return fmt == "csv"
    accept = request.headers.get("accept", "")
    return "text/csv" in accept and "application/json" not in accept


def series_response(request: Request, meta: dict[str, Any], rows: Sequence[dict[str, Any]],
                    columns: Sequence[str], *, filename: str) -> Response:
    """``{**meta, "data": rows}`` as JSON, or the rows as CSV with a header line."""
    if wants_csv(request):
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            w.writerow(["" if r.get(c) is None else r.get(c) for c in columns])
        return Response(buf.getvalue(), media_type=CSV_MEDIA, headers={
            "Content-Disposition": f'attachment; filename="{filename}.csv"'})
    return Response(orjson.dumps({**meta, "data": list(rows)}), media_type="application/json")


FORMAT_DOC = ("Time series answer JSON by default, CSV with `Accept: text/csv` or "
              "`?format=csv` (one row per bucket, header line).")
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"example": "start,end,value\n"}}}}
