"""Schemathesis hooks of the contract test (``SCHEMATHESIS_HOOKS``).

OpenAPI cannot state a rule between parameters: ``to`` after ``from``, a range no longer
than the bucket allows, and unique visitors only in buckets that do not span a midnight of
the server's zone (docs/api.md). A generated request that the schema calls valid but that
breaks one of these rules is refused with 422 as it should be; this hook moves its ``to``
(and asks visitors in the server's zone) so that it keeps the rules, and so every 422 left
on a valid request is a constraint the schema fails to state. Requests generated to be
invalid are untouched.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import schemathesis

from api.errors import ApiError
from api.timeq import MAX_RANGE_DAYS, parse_instant, parse_tz, within_range_limit

_DEFAULT_TZ = "Europe/Paris"


def _text(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def repaired(query: dict[str, Any], path: str = "") -> dict[str, Any] | None:
    """``query`` with a ``to`` that keeps the cross-parameter rules, or None when it keeps
    them already (or a value does not parse: then the request is refused for that)."""
    if path.endswith("/visitors") and query.get("tz") not in (None, _DEFAULT_TZ):
        query = {**query, "tz": _DEFAULT_TZ}
        return repaired(query, path) or query
    frm, to = query.get("from"), query.get("to")
    if not isinstance(frm, str) or not isinstance(to, str):
        return None
    try:
        tz = parse_tz(query.get("tz") if isinstance(query.get("tz"), str) else None,
                      _DEFAULT_TZ)
        lo = parse_instant(frm, tz, param="from")
        hi = parse_instant(to, tz, param="to")
    except ApiError:
        return None
    bucket = str(query.get("bucket"))  # not given: the strictest limit (one day)
    if lo < hi and within_range_limit(lo, hi, bucket if bucket in MAX_RANGE_DAYS else "5m",
                                      tz):
        return None
    new_hi = lo + timedelta(hours=20)  # within one calendar day, summer time or not
    if new_hi.year > 2098:  # keep both ends within the years the schema allows
        return {**query, "from": "2098-06-01", "to": "2098-06-02"}
    return {**query, "to": _text(new_hi)}


@schemathesis.hook
def before_call(ctx: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """Keep the cross-parameter rules in requests generated to be valid."""
    meta = case.meta
    if not case.query or meta is None or not meta.generation.mode.is_positive:
        return
    fixed = repaired(dict(case.query), case.operation.path)
    if fixed is not None:
        case.query = fixed  # schemathesis re-checks the case's validity after the hook
