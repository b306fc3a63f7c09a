"""The two routes of a metric (a site's and a device's), made from its declaration."""

from __future__ import annotations

import inspect
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response

from api.db import get_device, get_site
from api.deps import ID_PATTERN, Conn, Reader, only_buckets, time_range
from api.metrics.base import Metric, Scope, context_of, series
from api.output import FORMAT_DOC, series_response
from api.rollups import SourceParam
from api.timeq import Buckets
from beffroi.settings import Settings


async def answer(request: Request, conn: Any, metric: Metric, scope: Scope, b: Buckets,
                 source: str) -> Response:
    """The answer of ``metric`` for ``scope``: each bucket from the rollup or the raw rows
    (:func:`api.rollups.combine`), shaped, as JSON or CSV."""
    settings: Settings = request.app.state.settings
    if metric.check:
        metric.check(b, settings)
    ctx = await context_of(conn, metric, scope)
    ans = await series(conn, metric, scope, b, source, ctx=ctx, settings=settings)
    key = metric.target.site if scope.kind == "site" else metric.target.device
    extra = {k: ctx[k] for k in metric.meta if k in ctx}  # a device may lack some
    return series_response(request, b.meta(**{key: scope.id}, **extra, **ans.meta()),
                           ans.rows, metric.columns, filename=f"{metric.name}-{scope.id}")


def add_routes(router: APIRouter, metric: Metric) -> None:
    """Register ``GET /{sites}/{site_id}/{name}`` and ``GET /{devices}/{device_id}/{name}``
    on ``router``."""
    t = metric.target
    range_dep = Annotated[Buckets, Depends(time_range(metric.buckets))]
    for kind, noun, example in (("site", t.site, t.site_example),
                                ("device", t.device, t.device_example)):
        param = f"{noun}_id"
        endpoint = _endpoint(metric, kind, param)
        endpoint.__signature__ = inspect.Signature([
            inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                              annotation=Request),
            inspect.Parameter("conn", inspect.Parameter.KEYWORD_ONLY, annotation=Conn),
            inspect.Parameter("_reader", inspect.Parameter.KEYWORD_ONLY, annotation=Reader),
            inspect.Parameter(param, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[
                str, Path(pattern=ID_PATTERN, examples=[example])]),
            inspect.Parameter("b", inspect.Parameter.KEYWORD_ONLY, annotation=range_dep),
            inspect.Parameter("source", inspect.Parameter.KEYWORD_ONLY,
                              annotation=SourceParam, default="auto"),
        ])
        path = t.site_path if kind == "site" else t.device_path
        description = metric.description + (
            " " + metric.device_doc if kind == "device" and metric.device_doc else "")
        router.add_api_route(
            f"/{path}/{{{param}}}/{metric.name}", endpoint, methods=["GET"],
            summary=metric.summary[0 if kind == "site" else 1],
            description=f"{description} {FORMAT_DOC}", responses=dict(metric.responses),
            name=f"{noun}_{metric.name}")


def _endpoint(metric: Metric, kind: str, param: str) -> Any:
    async def endpoint(request: Request, *, conn: Any, _reader: Any, b: Buckets,
                       source: str = "auto", **ids: str) -> Response:
        if metric.bucket_reason:
            only_buckets(b, metric.buckets, metric.bucket_reason)
        ident = ids[param]
        t = metric.target
        row = (await get_site(conn, ident, t.site_kind, count_family=t.site_count)
               if kind == "site"
               else await get_device(conn, ident, t.family))
        scope = Scope("site" if kind == "site" else "device", ident, row)
        return await answer(request, conn, metric, scope, b, source)

    endpoint.__name__ = f"{kind}_{metric.name}"
    endpoint.__doc__ = metric.summary[0 if kind == "site" else 1]
    return endpoint
