"""One error body for every 4xx/5xx: ``{"error": code, "detail": ...}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing, unknown or revoked token",
          "content": {"application/json": {"example": error_body(
              "unauthorized", "missing bearer token")}}},
    403: {"description": "the token lacks the scope",
          "content": {"application/json": {"example": error_body(
              "forbidden", "this route needs the 'read' scope")}}},
    422: {"description": "a parameter is invalid or out of bounds",
          "content": {"application/json": {"example": error_body(
              "invalid_parameter", {"param": "from", "message": "range too long for bucket "
                                    "15m: at most 93 days"})}}},
}


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception to the common error body."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.detail), status_code=exc.status,
                            headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _CODE_OF_STATUS.get(exc.status_code, "error")
        return JSONResponse(error_body(code, exc.detail), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

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
