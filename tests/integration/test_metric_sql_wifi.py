"""The wifi metrics' SQL functions (``sql/metrics/wifi_*.sql``) tested directly against the
database: known rows in, the values they must give out, for a square and for an access
point, at bucket edges and over the 23-hour local day of the spring-forward change; the
rollups' fill functions and readers give the raw functions' answers; the session
aggregates count by commit time as the maintenance job needs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from api.metrics.wifi import DWELL_BOUNDS_S
from devices import store
from devices.registry import parse_registry

pytestmark = pytest.mark.stack

H0 = datetime(2025, 3, 30, 0, tzinfo=UTC)  # 01:00 in Paris; clocks go forward at H1
H1, H2 = H0 + timedelta(hours=1), H0 + timedelta(hours=2)
HOURS = [H0, H1, H2]
DAY = [datetime(2025, 3, 29, 23, tzinfo=UTC), datetime(2025, 3, 30, 22, tzinfo=UTC)]  # 23 h
END = DAY[1]  # rows at this instant lie outside every range asked here
TZ = "Europe/Paris"
BOUNDS = list(DWELL_BOUNDS_S)
S = timedelta(seconds=1)
M = timedelta(minutes=1)


def _call(conn: psycopg.Connection[Any], fn: str, *args: Any) -> list[dict[str, Any]]:
    marks = ", ".join(["%s"] * len(args))
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT * FROM metric.{fn}({marks})", args)
        return cur.fetchall()


def _by_i(rows: list[dict[str, Any]], *cols: str) -> dict[int, tuple[Any, ...]]:
    return {r["i"]: tuple(r[c] for c in cols) for r in rows}


def _fill(conn: psycopg.Connection[Any], table: str, fn: str, *extra: Any) -> None:
    conn.execute(f"DELETE FROM {table} WHERE hour >= %s AND hour < %s", (H0, H2))
    marks = "".join(", %s" for _ in extra)
    conn.execute(f"INSERT INTO {table} SELECT * FROM metric.{fn}(%s, %s, %s{marks})",
                 (HOURS, H0, H2, *extra))


def _key(n: int) -> bytes:
    return bytes([n]) * 16


@pytest.fixture
def city(conn: psycopg.Connection[Any], uid: str) -> str:
    """A square with two APs and a square with one; their reports and sessions around the
    spring-forward night. Returns the id prefix."""
    p = uid
    store.import_registry(conn, parse_registry({
        "sites": [{"id": f"{p}sq", "kind": "square", "name": "Place", "insee": "62041"},
                  {"id": f"{p}sq2", "kind": "square", "name": "Autre", "insee": "62041"}],
        "devices": [{"id": f"{p}ap1", "family": "wifi_ap", "site_id": f"{p}sq", "name": "1"},
                    {"id": f"{p}ap2", "family": "wifi_ap", "site_id": f"{p}sq", "name": "2"},
                    {"id": f"{p}ap3", "family": "wifi_ap", "site_id": f"{p}sq2",
                     "name": "3"}]}))
    ap1, ap2, ap3 = f"{p}ap1", f"{p}ap2", f"{p}ap3"
    stats = [  # time, AP, clients, rx, tx
        (H0 - 30 * M, ap1, 1, 1000, 100),  # before the hours: starts the first interval
        (H0 + 10 * S, ap1, 4, 1200, 110),
        (H0 + 40 * S, ap1, 6, 1500, 150),  # same minute: the minute's mean is 5
        (H0 + 30 * M, ap1, 2, 200, 20),  # counters restarted: 200 and 20 since
        (H1, ap1, 8, 300, 30),  # an edge belongs to the bucket it starts
        (END, ap1, 50, 10**9, 10**9),
        (H0 - timedelta(days=2), ap2, 0, 0, 0),  # more than a day before: no interval
        (H0 + 20 * S, ap2, 10, 50, 5),
        (H0 + 59 * M + 59 * S, ap2, 0, 80, 9),
        (H0 + 10 * M, ap3, 100, 10, 10),  # the other square
        (H0 + 20 * M, ap3, 100, 20, 20)]
    sessions = [  # time, AP, key, event, session_s
        (H0 + M, ap1, 1, "associated", None),
        (H0 + M + 40 * S, ap1, 1, "disassociated", None),  # 40 s
        (H0 + 20 * M, ap2, 1, "associated", None),  # the same client on the other AP
        (H0 - 11 * timedelta(hours=1), ap1, 2, "associated", None),
        (H0 + 5 * M, ap1, 2, "disassociated", None),  # 11 h 5 min: its association is
        # read 12 hours before the range
        (H0 - 13 * timedelta(hours=1), ap1, 5, "associated", None),
        (H0 + 2 * M, ap1, 5, "disassociated", None),  # more than 12 hours: no length
        (H0 + 10 * M, ap2, 3, "associated", None),
        (H1, ap2, 3, "disassociated", None),  # 50 min, in the bucket of H1
        (H0 + 30 * M, ap2, 4, "disassociated", 120),  # the length the AP reports
        (H0 + 5 * M, ap3, 6, "disassociated", 100),  # the other square
        (END, ap1, 7, "disassociated", 30)]
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO wifi_ap_stats (time, device_id, clients, rx_bytes, "
                        "tx_bytes) VALUES (%s, %s, %s, %s, %s)", stats)
        cur.executemany("INSERT INTO wifi_sessions (time, device_id, client_key, event, "
                        "session_s) VALUES (%s, %s, %s, %s, %s)",
                        [(t, ap, _key(k), ev, s) for t, ap, k, ev, s in sessions])
    return p


# -- clients ----------------------------------------------------------------------------------

def _clients(rows: list[dict[str, Any]]) -> dict[int, tuple[Any, ...]]:
    return {r["i"]: (round(r["clients_mean"], 9), r["aps"], round(r["clients_max"], 9))
            for r in rows}


def test_clients_of_a_square_and_of_an_ap(conn: psycopg.Connection[Any], city: str) -> None:
    p = city
    # hour 1: AP 1 reported 4, 6 and 2 (mean 4), AP 2 10 and 0 (mean 5); their busiest
    # minute together: 5 + 10; hour 2: AP 1's 8 at its start
    square = _clients(_call(conn, "wifi_clients", f"{p}sq", None, HOURS, H0, H2))
    assert square == {1: (9.0, 2, 15.0), 2: (8.0, 1, 8.0)}
    ap2 = _clients(_call(conn, "wifi_clients", None, f"{p}ap2", HOURS, H0, H2))
    assert ap2 == {1: (5.0, 1, 10.0)}
    two_hours = _clients(_call(conn, "wifi_clients", f"{p}sq", None, [H0, H2], H0, H2))
    assert two_hours == {1: (10.0, 2, 15.0)}  # AP 1: (4 + 6 + 2 + 8) / 4
    # the local day of 23 hours: AP 1 also reported 1 at 23:30 UTC (00:30 in Paris)
    day = _clients(_call(conn, "wifi_clients", f"{p}sq", None, DAY, DAY[0], DAY[1]))
    assert day == {1: (9.2, 2, 15.0)}


def test_clients_from_the_rollups_equal_raw(conn: psycopg.Connection[Any], city: str) -> None:
    p = city
    _fill(conn, "rollup_wifi_ap_1h", "wifi_ap_fill")
    conn.execute("DELETE FROM rollup_wifi_site_1h WHERE hour >= %s AND hour < %s", (H0, H2))
    conn.execute("INSERT INTO rollup_wifi_site_1h (hour, site_id, clients_max, clients_mean, "
                 "aps) SELECT * FROM metric.wifi_site_fill(%s, %s, %s)", (HOURS, H0, H2))
    for site, device in ((f"{p}sq", None), (None, f"{p}ap1"), (None, f"{p}ap2"),
                         (f"{p}sq2", None)):
        raw = _clients(_call(conn, "wifi_clients", site, device, HOURS, H0, H2))
        assert raw, (site, device)
        # hourly buckets: a square's own rows, an AP's rows
        assert _clients(_call(conn, "wifi_clients_hours", site, device, HOURS, H0,
                              H2)) == raw, (site, device)
        assert _clients(_call(conn, "wifi_clients_rollup", site, device, HOURS, H0,
                              H2)) == raw, (site, device)
        both = [H0, H2]
        assert _clients(_call(conn, "wifi_clients_rollup", site, device, both, H0, H2)) == (
            _clients(_call(conn, "wifi_clients", site, device, both, H0, H2))), (site, device)
    row = conn.execute("SELECT clients_mean, aps, clients_max FROM rollup_wifi_site_1h "
                       "WHERE site_id = %s AND hour = %s", (f"{p}sq", H0)).fetchone()
    assert row == (9.0, 2, 15.0)


def test_each_aps_latest_report_at_an_instant(conn: psycopg.Connection[Any],
                                             city: str) -> None:
    p = city

    def at(t: datetime) -> dict[str, tuple[Any, Any]]:
        return {r["id"]: (r["time"], r["clients"]) for r in _call(conn, "wifi_aps_at", t, 3)
                if r["id"].startswith(p)}

    assert at(H0 + 45 * S) == {f"{p}ap1": (H0 + 40 * S, 6), f"{p}ap2": (H0 + 20 * S, 10),
                               f"{p}ap3": (None, None)}
    # a report older than 3 reporting intervals (3 minutes) is stale: no count
    assert at(H0 + 32 * M) == {f"{p}ap1": (H0 + 30 * M, 2), f"{p}ap2": (None, None),
                               f"{p}ap3": (None, None)}
    assert at(H0 + 33 * M)[f"{p}ap1"] == (None, None)


def test_metric_functions_are_inlined_and_read_only_the_chunks_of_the_range(
        conn: psycopg.Connection[Any], city: str) -> None:
    p = city
    old = H0 - timedelta(days=60)  # a chunk of its own, outside the range
    conn.execute("INSERT INTO wifi_ap_stats (time, device_id, clients) VALUES (%s, %s, 1)",
                 (old, f"{p}ap1"))
    chunks = {r[0]: (r[1], r[2]) for r in conn.execute(
        "SELECT chunk_schema || '.' || chunk_name, range_start, range_end "
        "FROM timescaledb_information.chunks WHERE hypertable_name = 'wifi_ap_stats'")}
    assert any(end <= H0 - timedelta(days=1) for _, end in chunks.values())
    for fn in ("wifi_clients", "wifi_traffic"):
        plan = json.dumps(conn.execute(
            f"EXPLAIN (FORMAT JSON) SELECT * FROM metric.{fn}(%s, NULL, %s, %s, %s)",
            (f"{p}sq", HOURS, H0, H2)).fetchone())
        assert "Function Scan" not in plan, fn  # inlined into the statement
        read = {c for c in chunks if c.split(".")[1] in plan}
        assert read, fn
        # only the chunks of the range (traffic reads a day before it)
        assert all(end > H0 - timedelta(days=1) and start < H2
                   for start, end in (chunks[c] for c in read)), (fn, read)


# -- traffic ----------------------------------------------------------------------------------

def _traffic(rows: list[dict[str, Any]]) -> dict[int, tuple[Any, ...]]:
    return _by_i(rows, "rx_bytes", "tx_bytes", "intervals", "resets")


def test_traffic_of_a_square_and_of_an_ap(conn: psycopg.Connection[Any], city: str) -> None:
    p = city
    square = _traffic(_call(conn, "wifi_traffic", f"{p}sq", None, HOURS, H0, H2))
    # AP 1: +200/+10 from the report before the range, +300/+40, a restart (+200/+20);
    # AP 2: +30/+4 (its first report has none before it within a day); hour 2: +100/+10
    assert square == {1: (730, 74, 4, 1), 2: (100, 10, 1, 0)}
    ap2 = _traffic(_call(conn, "wifi_traffic", None, f"{p}ap2", HOURS, H0, H2))
    assert ap2 == {1: (30, 4, 1, 0)}
    day = _traffic(_call(conn, "wifi_traffic", f"{p}sq", None, DAY, DAY[0], DAY[1]))
    assert day == {1: (830, 84, 5, 1)}  # AP 1's 23:30 report is inside the day


def test_traffic_from_the_rollup_equals_raw(conn: psycopg.Connection[Any], city: str) -> None:
    p = city
    _fill(conn, "rollup_wifi_ap_1h", "wifi_ap_fill")
    for edges in (HOURS, [H0, H2]):
        for site, device in ((f"{p}sq", None), (None, f"{p}ap1"), (None, f"{p}ap3")):
            raw = _traffic(_call(conn, "wifi_traffic", site, device, edges, H0, H2))
            assert raw, (site, device)
            assert _traffic(_call(conn, "wifi_traffic_rollup", site, device, edges, H0,
                                  H2)) == raw, (site, device, edges)
    # an AP's hour is one row: its clients and its traffic
    row = conn.execute("SELECT reports, clients_sum, rx_bytes, traffic_intervals FROM "
                       "rollup_wifi_ap_1h WHERE device_id = %s AND hour = %s",
                       (f"{p}ap2", H0)).fetchone()
    assert row == (2, 10, 30, 1)


# -- dwell ------------------------------------------------------------------------------------

def _dwell(rows: list[dict[str, Any]]) -> dict[tuple[int, int], tuple[int, int]]:
    return {(r["i"], r["bin"]): (int(r["sessions"]), int(r["dwell_s"])) for r in rows}


def test_dwell_of_a_square_and_of_an_ap(conn: psycopg.Connection[Any], city: str) -> None:
    p = city
    square = _dwell(_call(conn, "wifi_dwell", f"{p}sq", None, HOURS, H0, H2, BOUNDS))
    assert square == {(1, 0): (1, 40), (1, 1): (1, 120), (1, 7): (1, 11 * 3600 + 300),
                      (2, 4): (1, 3000)}
    ap2 = _dwell(_call(conn, "wifi_dwell", None, f"{p}ap2", HOURS, H0, H2, BOUNDS))
    assert ap2 == {(1, 1): (1, 120), (2, 4): (1, 3000)}


def test_dwell_from_the_aggregate_equals_raw(conn: psycopg.Connection[Any], city: str) -> None:
    p = city
    _fill(conn, "wifi_dwell_1h", "wifi_dwell_fill", BOUNDS)
    for edges in (HOURS, [H0, H2]):
        for site, device in ((f"{p}sq", None), (None, f"{p}ap1"), (None, f"{p}ap2")):
            raw = _dwell(_call(conn, "wifi_dwell", site, device, edges, H0, H2, BOUNDS))
            assert raw, (site, device)
            assert _dwell(_call(conn, "wifi_dwell_rollup", site, device, edges, H0, H2,
                                BOUNDS)) == raw, (site, device, edges)


# -- visitors ---------------------------------------------------------------------------------

def _visitors(rows: list[dict[str, Any]]) -> dict[int, tuple[Any, ...]]:
    return _by_i(rows, "visitors", "associations")


def test_visitors_of_a_square_and_of_an_ap(conn: psycopg.Connection[Any], city: str) -> None:
    p = city
    square = _visitors(_call(conn, "wifi_visitors", f"{p}sq", None, HOURS, H0, H2, TZ))
    # clients 1, 2, 3, 4, 5 (1 on both APs counts once); 3 associations; hour 2: client 3
    assert square == {1: (5, 3), 2: (1, 0)}
    ap1 = _visitors(_call(conn, "wifi_visitors", None, f"{p}ap1", HOURS, H0, H2, TZ))
    assert ap1 == {1: (3, 1)}
    day = _visitors(_call(conn, "wifi_visitors", f"{p}sq", None, DAY, DAY[0], DAY[1], TZ))
    assert day == {1: (5, 3)}  # the associations before the day are not in it


def test_visitors_from_the_aggregates_equal_raw(conn: psycopg.Connection[Any],
                                               city: str) -> None:
    p = city
    _fill(conn, "wifi_visitors_1h", "wifi_visitors_fill", None)
    for site, device in ((f"{p}sq", None), (None, f"{p}ap1"), (None, f"{p}ap2")):
        raw = _visitors(_call(conn, "wifi_visitors", site, device, HOURS, H0, H2, TZ))
        assert raw, (site, device)
        assert _visitors(_call(conn, "wifi_visitors_rollup", site, device, HOURS, H0, H2,
                               TZ)) == raw, (site, device)
    # the day of 23 hours, from the rows the daily aggregation writes
    rows = _call(conn, "wifi_visitors_days", DAY[0], DAY[1], TZ, None, None)
    mine = [r for r in rows if r["site_id"] == f"{p}sq"]
    assert {(r["day"].isoformat(), r["tz"], r["day_start"], r["device_id"]) for r in mine} == {
        ("2025-03-30", TZ, DAY[0], d) for d in ("", f"{p}ap1", f"{p}ap2")}
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO wifi_visitors_1d (day, tz, day_start, site_id, device_id, "
                        "visitors, associations) VALUES (%(day)s, %(tz)s, %(day_start)s, "
                        "%(site_id)s, %(device_id)s, %(visitors)s, %(associations)s)", mine)
        # a day of another zone starting at the same instant is not this zone's
        cur.execute("INSERT INTO wifi_visitors_1d VALUES ('2025-03-29', 'Atlantic/Azores', "
                    "%s, %s, '', 999, 999)", (DAY[0], f"{p}sq"))
    for site, device in ((f"{p}sq", None), (None, f"{p}ap2")):
        raw = _visitors(_call(conn, "wifi_visitors", site, device, DAY, DAY[0], DAY[1], TZ))
        assert _visitors(_call(conn, "wifi_visitors_daily", site, device, DAY, DAY[0],
                               DAY[1], TZ)) == raw, (site, device)


def test_sessions_are_counted_by_commit_time(conn: psycopg.Connection[Any], city: str) -> None:
    p = city
    assert conn.execute("SHOW track_commit_timestamp").fetchone() == ("on",)
    cutoff = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
    late = H0 + 15 * M  # a client whose session arrives after the hour was aggregated
    conn.execute("INSERT INTO wifi_sessions (time, device_id, client_key, event) "
                 "VALUES (%s, %s, %s, 'associated')", (late, f"{p}ap2", _key(9)))
    now = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]

    def square(rows: list[dict[str, Any]]) -> dict[Any, tuple[int, int]]:
        return {r["hour"]: (r["visitors"], r["associations"]) for r in rows
                if r["site_id"] == f"{p}sq" and r["device_id"] == ""}

    # the aggregation of the hours counts what was committed up to its cutoff...
    assert square(_call(conn, "wifi_visitors_hours", H0, H2, None, cutoff)) == {
        H0: (5, 3), H1: (1, 0)}
    assert square(_call(conn, "wifi_visitors_hours", H0, H2, None, None)) == {
        H0: (6, 4), H1: (1, 0)}  # commit times not tracked: every row
    # ...and the next run adds what was committed since, in the hours already done
    assert _call(conn, "wifi_sessions_late", cutoff, now, H2, None) == [{"sessions": 1}]
    assert _call(conn, "wifi_sessions_late", cutoff, now, H0, None) == [{"sessions": 0}]
    assert _call(conn, "wifi_sessions_late", cutoff, now, None, H2) == [{"sessions": 1}]
    assert square(_call(conn, "wifi_visitors_hours", None, H2, cutoff, now)) == {H0: (1, 1)}
    days = _call(conn, "wifi_visitors_days", None, DAY[1], TZ, cutoff, now)
    assert [(r["day"].isoformat(), r["day_start"], r["visitors"]) for r in days
            if r["site_id"] == f"{p}sq" and r["device_id"] == ""] == [
        ("2025-03-30", DAY[0], 1)]
