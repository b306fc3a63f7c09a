"""The metric functions' rows are read in binary (``api.metrics.base.rows_of``): each
column they return must be of a type that loads the same from binary and text output
(``api.db.BINARY_SAFE``), or an answer would change (a float4 battery of 0.04 would read
0.03999999910593033)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from api.db import BINARY_SAFE
from api.metrics.catalog import METRICS

pytestmark = pytest.mark.stack

_RESULT_TYPES = """
    SELECT t.typname
    FROM pg_proc p
    JOIN pg_namespace n ON n.oid = p.pronamespace
    CROSS JOIN LATERAL unnest(p.proallargtypes, p.proargmodes) AS a(oid, mode)
    JOIN pg_type t ON t.oid = a.oid
    WHERE n.nspname = 'metric' AND p.proname = %s AND a.mode IN ('o', 't')
"""


def _functions() -> list[str]:
    names = set()
    for m in METRICS:
        names.add(m.raw)
        if m.rolled:
            names.add(m.rolled)
        names.update(r.function for r in m.readers)
    return sorted(names)


def result_types(conn: psycopg.Connection[Any], function: str) -> set[str]:
    return {r[0] for r in conn.execute(_RESULT_TYPES, (function,)).fetchall()}


@pytest.mark.parametrize("function", _functions())
def test_every_metric_function_returns_types_read_alike_in_binary(
        conn: psycopg.Connection[Any], function: str) -> None:
    types = result_types(conn, function)
    assert types, f"metric.{function} not found or returns no table"
    assert types <= BINARY_SAFE, (function, types - BINARY_SAFE)


def test_a_float4_column_is_caught(conn: psycopg.Connection[Any]) -> None:
    """The check sees a float4 column where one is returned (the device health scan's
    battery): it is not a metric function, so its rows are read as text."""
    assert "float4" in result_types(conn, "device_health_scan")
    assert "device_health_scan" not in _functions()
