"""One error body for every 4xx/5xx: ``{"error": code, "detail": ...}``."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = logging.getLogger(__name__)

_CODE_OF_STATUS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                   405: "method_not_allowed", 406: "not_acceptable", 422: "invalid_parameter",
                   429: "too_many_requests", 500: "internal_error", 503: "unavailable"}


class ApiError(Exception):
    """An error the client gets as is: status, machine-readable code, human detail."""

    def __init__(self, status: int, code: str, detail: Any,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers


def invalid(detail: str, *, param: str | None = None) -> ApiError:
    """A 422 about one parameter (what was wrong and the limit)."""
    body: Any = {"param": param, "message": detail} if param else detail
    return ApiError(422, "invalid_parameter", body)


def not_found(what: str, ident: str) -> ApiError:
    """A 404 naming what was looked for."""
    return ApiError(404, "not_found", f"no {what} {ident!r}")


def error_body(code: str, detail: Any) -> dict[str, Any]:
    """The JSON body of an error."""
    return {"error": code, "detail": detail}


#: Every error code the API answers, by status.
ERROR_CODES = (*_CODE_OF_STATUS.values(), "conflict")


class ErrorBody(BaseModel):
    """The body of every 4xx/5xx answer."""

    error: str = Field(description="machine-readable code: under /v1 one of "
                       + ", ".join(ERROR_CODES) + " (docs/api.md); NGSI-LD routes use "
                       "NGSI-LD's (BadRequestData, ResourceNotFound)",
                       examples=["invalid_parameter"])
    detail: Any = Field(description="what was wrong: a message, or for parameter errors "
                        "`{param, message}` (a list of them when several failed)")


def error_response(description: str, code: str, detail: Any) -> dict[str, Any]:
    """An OpenAPI response entry with the error body's schema and an example."""
    return {"model": ErrorBody, "description": description,
            "content": {"application/json": {"example": error_body(code, detail)}}}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: error_response("a value the database cannot take (e.g. a NUL character)",
                        "bad_request", "a value of the request is not valid text"),
    401: error_response("missing, unknown or revoked token", "unauthorized",
                        "missing bearer token"),
    403: error_response("the token lacks the scope", "forbidden",
                        "this route needs the 'read' scope"),
    406: error_response("the Accept header (or `format`) asks for a format this route does "
                        "not answer", "not_acceptable", "this route answers application/json; "
                        "the Accept header allows none of them"),
    422: error_response("a parameter is invalid or out of bounds", "invalid_parameter",
                        {"param": "to", "message": "range too long for bucket 15m: at most "
                         "93 days; ask a shorter range or a larger bucket"}),
    503: error_response("the database is unreachable", "unavailable",
                        "database unreachable"),
}
#: The answers of the public routes (open data, NGSI-LD: no token, rate-limited).
PUBLIC_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: error_response("an NGSI-LD query the server cannot read (`q`), or none of type, "
                        "id or q", "BadRequestData", "give at least one of type, id or q"),
    404: error_response("open data is off or not yet published, or no such file or entity",
                        "not_found", "no open-data file 'nope.csv'"),
    422: ERROR_RESPONSES[422],
    429: error_response("over the per-address rate of open-data requests",
                        "too_many_requests", "at most 60 open-data requests per minute"),
    503: ERROR_RESPONSES[503],
}
NOT_FOUND_RESPONSE: dict[int | str, dict[str, Any]] = {
    404: error_response("no such resource: an unknown id, or a site or device of another "
                        "kind", "not_found", "no parking zone 'parking-nowhere'")}


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at the request's path (the ``Allow`` of a 405)."""
    return [m for m in _METHODS
            if any(route.matches({**request.scope, "method": m})[0] == Match.FULL
                   for route in request.app.router.routes)]


_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception to the common error body."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.detail), status_code=exc.status,
                            headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _CODE_OF_STATUS.get(exc.status_code, "error")
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            # Starlette names the methods of the first route of the path only (POST for
            # /v1/operate/runs although GET is served too): name those of every route.
            headers["Allow"] = ", ".join(allowed_methods(request))
        return JSONResponse(error_body(code, exc.detail), status_code=exc.status_code,
                            headers=headers or None)

    @app.exception_handler(psycopg.DataError)
    async def _data_error(request: Request, exc: psycopg.DataError) -> JSONResponse:
        # A value the database cannot take (a NUL character in text, an invalid byte
        # sequence, a number out of range) is the request's fault, never a 500.
        log.info("data error on %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse(error_body("bad_request", "a value of the request cannot be "
                                       "used (e.g. a NUL character in a text parameter)"),
                            status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"param": ".".join(str(p) for p in e.get("loc", ()) if p != "query"),
                    "message": e.get("msg", "")} for e in exc.errors()]
        return JSONResponse(jsonable_encoder(error_body("invalid_parameter", details)),
                            status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path,
                  exc_info=exc)
        return JSONResponse(error_body("internal_error", "unexpected error; see the server log"),
                            status_code=500)
