"""The OpenAPI document, with what the routes' declarations alone cannot say: the bearer
token every ``/v1`` route needs, and the time zones a ``tz`` parameter takes (one shared
list of names, generated when the document is first asked for)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api.timeq import zone_names

_TZ_REF = {"$ref": "#/components/schemas/TimeZone"}


def install_openapi(app: FastAPI) -> None:
    """Replace ``app.openapi`` by a generator that completes FastAPI's document."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version,
                              description=app.description, routes=app.routes)
            complete(doc)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(doc: dict[str, Any]) -> None:
    """Add the bearer scheme to the ``/v1`` operations and the zone names to ``tz``."""
    components = doc.setdefault("components", {})
    components.setdefault("securitySchemes", {})["bearer"] = {
        "type": "http", "scheme": "bearer",
        "description": "a token from `beffroi tokens create` (docs/api.md)"}
    # A pattern rather than an enumeration: the same set of names, but tools that try
    # every member of an enumeration (Schemathesis' coverage phase) would send 600 requests.
    names = "|".join(z.replace("+", "\\+") for z in sorted(zone_names()))
    components.setdefault("schemas", {})["TimeZone"] = {
        "type": "string", "title": "TimeZone", "pattern": f"^(?:{names})$",
        "examples": ["Europe/Paris", "UTC", "America/New_York"],
        "description": "an IANA time zone name this server knows (the pattern lists them)"}
    for path, ops in doc.get("paths", {}).items():
        for op in ops.values():
            if path.startswith("/v1/"):
                op["security"] = [{"bearer": []}]
            for param in op.get("parameters", []):
                if param.get("name") == "tz" and param.get("in") == "query":
                    param["schema"] = {**_TZ_REF, "description": param["schema"].get(
                        "description", "IANA time zone")}
