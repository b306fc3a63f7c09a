"""Each metric's SQL functions (``sql/metrics/``) tested directly against the database:
known rows in, the values they must give out, for a site and for a device; the rollup's
fill function and the rollup reader give the raw function's answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from devices import store
from devices.registry import parse_registry

pytestmark = pytest.mark.stack

T0 = datetime(2025, 3, 30, 0, tzinfo=UTC)  # the spring-forward night, in UTC hours
HOURS = [T0 + timedelta(hours=h) for h in range(5)]


def _call(conn: psycopg.Connection[Any], fn: str, *args: Any) -> list[dict[str, Any]]:
    marks = ", ".join(["%s"] * len(args))
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT * FROM metric.{fn}({marks})", args)
        return cur.fetchall()


def _fill(conn: psycopg.Connection[Any], table: str, fn: str, lo: datetime,
          hi: datetime, *args: Any, column: str = "hour",
          slot: timedelta = timedelta(hours=1)) -> None:
    edges = [lo + k * slot for k in range(int((hi - lo) / slot) + 1)]
    conn.execute(f"DELETE FROM {table} WHERE {column} >= %s AND {column} < %s", (lo, hi))
    marks = "".join(", %s" for _ in args)
    conn.execute(f"INSERT INTO {table} SELECT * FROM metric.{fn}(%s, %s, %s{marks})",
                 (edges, lo, hi, *args))


@pytest.fixture
def meters(conn: psycopg.Connection[Any], uid: str) -> str:
    """A zone with two meters and a meter of another zone; returns the id prefix."""
    p = uid
    store.import_registry(conn, parse_registry({
        "sites": [{"id": f"{p}z", "kind": "parking_zone", "name": "Zone",
                   "insee": "62041"},
                  {"id": f"{p}y", "kind": "parking_zone", "name": "Other",
                   "insee": "62041"}],
        "devices": [{"id": f"{p}m1", "family": "parking_meter", "site_id": f"{p}z",
                     "name": "m1"},
                    {"id": f"{p}m2", "family": "parking_meter", "site_id": f"{p}z",
                     "name": "m2"},
                    {"id": f"{p}m3", "family": "parking_meter", "site_id": f"{p}y",
                     "name": "m3"}]}))
    tx = [(HOURS[0] + timedelta(minutes=5), f"{p}m1", "a", 150, "card"),
          (HOURS[0] + timedelta(minutes=59, seconds=59), f"{p}m1", "b", 200, "card"),
          (HOURS[1], f"{p}m2", "c", 300, "coins"),  # an edge belongs to the bucket it starts
          (HOURS[1] + timedelta(minutes=30), f"{p}m1", "d", 50, "mobile"),
          (HOURS[1] + timedelta(minutes=31), f"{p}m3", "e", 999, "card"),  # other zone
          (HOURS[4], f"{p}m1", "f", 70, "card")]  # at the end: outside [lo, hi)
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO parking_transactions (time, device_id, transaction_id, "
                        "amount_cents, duration_s, payment_method) VALUES (%s, %s, %s, %s, "
                        "600, %s)", tx)
        cur.executemany("INSERT INTO parking_meter_status (time, device_id, fault_code) "
                        "VALUES (%s, %s, %s)", [
                            (HOURS[2], f"{p}m1", "paper_out"),
                            (HOURS[2] + timedelta(minutes=9), f"{p}m1", "paper_out"),
                            (HOURS[2] + timedelta(minutes=20), f"{p}m2", "paper_out"),
                            (HOURS[2] + timedelta(minutes=30), f"{p}m2", "jam"),
                            (HOURS[3], f"{p}m1", None)])
    return p


def _revenue(rows: list[dict[str, Any]]) -> dict[tuple[int, str | None], tuple[Any, ...]]:
    return {(r["i"], r["method"]): (r["transactions"], r["revenue_cents"], r["meter_faults"])
            for r in rows}


def test_revenue_of_a_zone_and_of_a_meter(conn: psycopg.Connection[Any], meters: str) -> None:
    p, lo, hi = meters, HOURS[0], HOURS[4]
    zone = _revenue(_call(conn, "parking_revenue", f"{p}z", None, HOURS[:5], lo, hi))
    assert zone == {(1, "card"): (2, 350, None), (2, "coins"): (1, 300, None),
                    (2, "mobile"): (1, 50, None), (3, None): (None, None, 3)}
    meter = _revenue(_call(conn, "parking_revenue", None, f"{p}m2", HOURS[:5], lo, hi))
    assert meter == {(2, "coins"): (1, 300, None), (3, None): (None, None, 2)}
    two_hours = _revenue(_call(conn, "parking_revenue", f"{p}z", None,
                               [HOURS[0], HOURS[2], HOURS[4]], lo, hi))
    assert two_hours == {(1, "card"): (2, 350, None), (1, "coins"): (1, 300, None),
                         (1, "mobile"): (1, 50, None), (2, None): (None, None, 3)}


def test_revenue_from_its_rollups_equals_raw(conn: psycopg.Connection[Any],
                                              meters: str) -> None:
    p, lo, hi = meters, HOURS[0], HOURS[4]
    _fill(conn, "rollup_parking_tx_1h", "parking_tx_fill", lo, hi)
    _fill(conn, "rollup_parking_faults_1h", "parking_faults_fill", lo, hi)
    for edges in (HOURS[:5], [HOURS[0], HOURS[2], HOURS[4]], [lo, hi]):
        for site, device in ((f"{p}z", None), (None, f"{p}m1"), (None, f"{p}m3")):
            raw = _call(conn, "parking_revenue", site, device, edges, lo, hi)
            rolled = _call(conn, "parking_revenue_rollup", site, device, edges, lo, hi)
            assert raw, (site, device, edges)
            assert _revenue(rolled) == _revenue(raw), (site, device, edges)


# -- parking occupancy ------------------------------------------------------------------------

STALE = 3  # api.metrics.parking.STALE_AFTER, the argument the routes pass
M = timedelta(minutes=1)
#: The Paris day of the spring-forward change: 23 hours, from 23:00 UTC the day before.
PARIS_DAY = (datetime(2025, 3, 29, 23, tzinfo=UTC), datetime(2025, 3, 30, 22, tzinfo=UTC))


def _zone_with_spots(conn: psycopg.Connection[Any], p: str, spots: dict[str, int],
                     states: list[tuple[datetime, str, str]],
                     inactive: tuple[str, ...] = ()) -> None:
    """Zone ``{p}z`` with the spots of ``spots`` (name: report interval) and spot ``{p}o`` of
    zone ``{p}y`` (interval 600 s), and their ``states`` (time, spot name, state)."""
    store.import_registry(conn, parse_registry({
        "sites": [{"id": f"{p}z", "kind": "parking_zone", "name": "Zone", "insee": "62041"},
                  {"id": f"{p}y", "kind": "parking_zone", "name": "Other",
                   "insee": "62041"}],
        "devices": [*({"id": f"{p}{n}", "family": "parking_spot", "site_id": f"{p}z",
                       "name": n, "report_interval_s": s, "active": n not in inactive}
                      for n, s in spots.items()),
                    {"id": f"{p}o", "family": "parking_spot", "site_id": f"{p}y",
                     "name": "o", "report_interval_s": 600}]}))
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO parking_spot_state (time, device_id, state) "
                        "VALUES (%s, %s, %s)", [(t, f"{p}{n}", st) for t, n, st in states])


@pytest.fixture
def spots(conn: psycopg.Connection[Any], uid: str) -> str:
    """Spot a (report every 600 s: stale after 30 min) and b (60 s: stale after 3 min) of
    zone z, spot o of another zone; returns the id prefix."""
    t = T0
    _zone_with_spots(conn, uid, {"a": 600, "b": 60}, [
        (t - 20 * M, "a", "occupied"),  # before the range: in force at its start
        (t + 5 * M, "a", "free"),  # free for 30 min (stale), then unknown until 01:00
        (t + 60 * M, "a", "occupied"),  # on an edge: belongs to the hour it starts
        (t + 70 * M, "a", "unknown"),  # the sensor cannot tell: not free, not occupied
        (t + 80 * M, "a", "free"),
        (t + 110 * M, "a", "occupied"),  # stale at 02:20: split over the edge at 02:00
        (t + 240 * M, "a", "occupied"),  # at the end of the 4 hours: after them
        (t - 10 * M, "b", "occupied"),  # stale at 23:53, before the range
        (t + 30 * M, "b", "occupied"),
        (t + 31 * M, "b", "free"),  # stale after 3 min
        (t + 10 * M, "o", "occupied")])  # other zone
    return uid


def _occ(rows: list[dict[str, Any]]) -> dict[int, tuple[float, float]]:
    return {r["i"]: (round(r["occupied_s"], 6), round(r["free_s"], 6)) for r in rows}


def test_occupancy_of_a_zone_and_of_a_spot(conn: psycopg.Connection[Any], spots: str) -> None:
    p, lo, hi = spots, HOURS[0], HOURS[4]
    zone = _occ(_call(conn, "parking_occupancy", f"{p}z", None, HOURS[:5], lo, hi, STALE))
    assert zone == {1: (300 + 60, 1800 + 180), 2: (600 + 600, 1800), 3: (1200, 0)}
    spot_a = _occ(_call(conn, "parking_occupancy", None, f"{p}a", HOURS[:5], lo, hi, STALE))
    assert spot_a == {1: (300, 1800), 2: (1200, 1800), 3: (1200, 0)}
    spot_b = _occ(_call(conn, "parking_occupancy", None, f"{p}b", HOURS[:5], lo, hi, STALE))
    assert spot_b == {1: (60, 180)}
    # Quarter hours: the interval from 00:05 to 00:35 is cut at 00:15 and 00:30.
    quarters = [T0 + 15 * M * k for k in range(5)]
    q = _occ(_call(conn, "parking_occupancy", None, f"{p}a", quarters, T0, quarters[-1],
                   STALE))
    assert q == {1: (300, 600), 2: (0, 900), 3: (0, 300)}
    # The 23-hour Paris day of the change, one bucket: now the reports before 00:00 (a
    # from 23:40, b from 23:50 until stale) and at 04:00 (until stale) count in full.
    day = _occ(_call(conn, "parking_occupancy", f"{p}z", None, list(PARIS_DAY), *PARIS_DAY,
                     STALE))
    assert day == {1: (1200 + 180 + 360 + 1200 + 1200 + 1800, 1980 + 1800)}


def test_occupancy_lookback_is_three_heartbeats_of_the_slowest_sensor(
        conn: psycopg.Connection[Any], spots: str) -> None:
    p = spots
    zone = _call(conn, "parking_occupancy_lookback", f"{p}z", None, STALE)
    assert zone == [{"lookback": timedelta(minutes=30)}]
    spot = _call(conn, "parking_occupancy_lookback", None, f"{p}b", STALE)
    assert spot == [{"lookback": timedelta(minutes=3)}]


def test_occupancy_from_its_rollups_equals_raw(conn: psycopg.Connection[Any],
                                                spots: str) -> None:
    p, (lo, hi) = spots, PARIS_DAY
    _fill(conn, "rollup_parking_spot_1h", "parking_spot_fill", lo, hi, STALE)
    _fill(conn, "rollup_parking_zone_15m", "parking_zone_fill", lo, hi, STALE,
          column="slot", slot=timedelta(minutes=15))
    zone_rows = conn.execute("SELECT slot, occupied_s, free_s FROM rollup_parking_zone_15m "
                             "WHERE site_id = %s ORDER BY slot", (f"{p}z",)).fetchall()
    assert zone_rows[:3] == [(T0 - 30 * M, 300, 0),  # a from 23:40
                             (T0 - 15 * M, 900 + 180, 0),  # and b from 23:50 to 23:53
                             (T0, 300, 600)]  # a free from 00:05
    hours = [lo + timedelta(hours=h) for h in range(24)]  # 23 hours: 24 edges
    for edges in (hours, [*hours[::2], hi], [lo, hi], [T0, T0 + 30 * M, T0 + 45 * M]):
        a, z = edges[0], edges[-1]
        for site, device in ((f"{p}z", None), (None, f"{p}a"), (None, f"{p}o")):
            if device is not None and (z - a) % timedelta(hours=1):
                continue  # a spot's rollup has whole hours only
            raw = _call(conn, "parking_occupancy", site, device, edges, a, z, STALE)
            rolled = _call(conn, "parking_occupancy_rollup", site, device, edges, a, z, STALE)
            assert raw, (site, device, edges)
            assert _occ(rolled) == _occ(raw), (site, device, edges)


def test_spots_at_an_instant_and_the_zone_now(conn: psycopg.Connection[Any],
                                              uid: str) -> None:
    p, now = uid, datetime.now(UTC)
    _zone_with_spots(conn, p, {"a": 600, "b": 60, "c": 600, "off": 600}, [
        (T0 + 5 * M, "a", "free"), (T0 + 31 * M, "b", "occupied"),
        (T0 + 40 * M, "c", "occupied"),  # after the instant asked
        (T0 + 5 * M, "off", "occupied"),  # inactive: not listed
        (now - 5 * M, "a", "occupied"), (now + timedelta(seconds=30), "b", "free"),
        (now - 31 * M, "c", "occupied")], inactive=("off",))

    def states(at: datetime | None) -> dict[str, str]:
        return {r["id"]: r["state"]
                for r in _call(conn, "parking_spots_at", f"{p}z", at, now, STALE)}

    assert states(T0 + 34 * M + timedelta(seconds=59)) == {
        f"{p}a": "free", f"{p}b": "unknown", f"{p}c": "unknown"}  # b: 3 min 59 s old
    assert states(T0 + 33 * M) == {f"{p}a": "free", f"{p}b": "occupied", f"{p}c": "unknown"}
    assert states(T0 + 35 * M)[f"{p}a"] == "unknown"  # exactly 3 heartbeats: stale
    # Now: the latest report, even stamped a little ahead of the server's clock.
    assert states(None) == {f"{p}a": "occupied", f"{p}b": "free", f"{p}c": "unknown"}
    every = _call(conn, "parking_spots_at", None, T0 + 33 * M, now, STALE)
    assert {r["id"] for r in every} >= {f"{p}a", f"{p}b", f"{p}c", f"{p}o"}
    assert f"{p}off" not in {r["id"] for r in every}
    current = {r["state"]: r["n"] for r in _call(conn, "parking_zone_current", f"{p}z", now, STALE)}
    assert current == {"occupied": 1, "free": 1, "unknown": 1}
    # Bounded by the zone's slowest sensor (what the API passes: 3 heartbeats of 600 s),
    # the same states; a bound shorter than a sensor's own staleness would lose states.
    window = _call(conn, "parking_occupancy_lookback", f"{p}z", None, STALE)[0]["lookback"]
    assert window == timedelta(seconds=600 * STALE)
    for at in (T0 + 33 * M, None):
        bounded = {r["id"]: r["state"]
                   for r in _call(conn, "parking_spots_at", f"{p}z", at, now, STALE, window)}
        assert bounded == states(at)
    short = {r["id"]: r["state"] for r in _call(conn, "parking_spots_at", f"{p}z", None, now,
                                               STALE, timedelta(minutes=1))}
    assert short[f"{p}a"] == "unknown"  # its report of 5 minutes ago left out
    current = {r["state"]: r["n"]
               for r in _call(conn, "parking_zone_current", f"{p}z", now, STALE, window)}
    assert current == {"occupied": 1, "free": 1, "unknown": 1}


# -- parking turnover -------------------------------------------------------------------------

@pytest.fixture
def arrivals(conn: psycopg.Connection[Any], uid: str) -> str:
    """Spots a, b, c of zone z and o of another zone with known arrivals; returns the
    id prefix."""
    t, day = T0, timedelta(days=1)
    _zone_with_spots(conn, uid, {"a": 600, "b": 600, "c": 600}, [
        (t - 60 * M, "a", "free"),
        (t + 10 * M, "a", "occupied"),  # arrival, stays 30 min
        (t + 40 * M, "a", "free"),
        (t + 60 * M, "a", "occupied"),  # arrival on an edge; stays over a day: no stay
        (t + 60 * M + day + M, "a", "free"),
        (t - day, "b", "occupied"),
        (t + 150 * M, "b", "occupied"),  # the same state 26.5 hours later: no arrival
        (t + 180 * M, "b", "free"),
        (t + 239 * M + timedelta(seconds=59), "b", "occupied"),  # arrival, stay goes on
        (t - 2 * day + 10 * M, "c", "occupied"),
        (t + 20 * M, "c", "occupied"),  # after more than 2 days of silence: an arrival
        (t + 50 * M, "c", "free"),
        (t + 10 * M, "o", "occupied")])  # other zone
    return uid


def _turn(rows: list[dict[str, Any]]) -> dict[int, tuple[int, int, float]]:
    return {r["i"]: (r["arrivals"], r["stays"], round(r["stay_s"], 6)) for r in rows}


def test_turnover_of_a_zone_and_of_a_spot(conn: psycopg.Connection[Any],
                                          arrivals: str) -> None:
    p, lo, hi = arrivals, HOURS[0], HOURS[4]
    zone = _turn(_call(conn, "parking_turnover", f"{p}z", None, HOURS[:5], lo, hi))
    assert zone == {1: (2, 2, 3600), 2: (1, 0, 0), 4: (1, 0, 0)}
    spot = _turn(_call(conn, "parking_turnover", None, f"{p}a", HOURS[:5], lo, hi))
    assert spot == {1: (1, 1, 1800), 2: (1, 0, 0)}
    # A bucket's answer does not depend on where the range ends.
    short = _turn(_call(conn, "parking_turnover", f"{p}z", None, HOURS[:3], lo, HOURS[2]))
    assert short == {1: (2, 2, 3600), 2: (1, 0, 0)}
    day = _turn(_call(conn, "parking_turnover", f"{p}z", None, list(PARIS_DAY), *PARIS_DAY))
    assert day == {1: (4, 2, 3600)}


def test_turnover_from_its_rollup_equals_raw(conn: psycopg.Connection[Any],
                                              arrivals: str) -> None:
    p, (lo, hi) = arrivals, PARIS_DAY
    _fill(conn, "rollup_parking_turnover_1h", "parking_turnover_fill", lo, hi)
    rows = conn.execute("SELECT hour, device_id, arrivals, stays, stay_s FROM "
                        "rollup_parking_turnover_1h WHERE site_id = %s ORDER BY hour, "
                        "device_id", (f"{p}z",)).fetchall()
    assert rows[:3] == [(T0, "", 2, 2, 3600), (T0, f"{p}a", 1, 1, 1800),
                        (T0, f"{p}c", 1, 1, 1800)]  # the zone's row has device_id ''
    hours = [lo + timedelta(hours=h) for h in range(24)]
    for edges in (hours, [*hours[::2], hi], [lo, hi], HOURS[:5]):
        a, z = edges[0], edges[-1]
        for site, device in ((f"{p}z", None), (None, f"{p}a"), (None, f"{p}o")):
            raw = _call(conn, "parking_turnover", site, device, edges, a, z)
            rolled = _call(conn, "parking_turnover_rollup", site, device, edges, a, z)
            assert raw, (site, device, edges)
            assert _turn(rolled) == _turn(raw), (site, device, edges)
