"""Open data, pure parts: secrecy rules, local days across DST, tables, entities, the NGSI-LD
query subset, the rate limiter."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from api.errors import ApiError
from api.opendata.collect import Period, days, months
from api.opendata.routes import RateLimiter, parse_q
from devices.opendata import ngsild
from devices.opendata.secrecy import Thresholds, recoverable, too_small
from devices.opendata.tables import ENERGY_DAILY, WIFI_DAILY

PARIS = ZoneInfo("Europe/Paris")


def test_small_counts_are_secret_but_zero_is_not() -> None:
    assert [too_small(n, 10) for n in (None, 0, 1, 9, 10, 11)] == [
        False, False, True, True, False, False]
    with pytest.raises(ValueError, match="at least 1"):
        Thresholds(wifi=0)


def test_secondary_suppression() -> None:
    assert not recoverable([], 10, same_units=False)
    assert recoverable([4, 3], 10, same_units=False)  # 7 people could be recovered
    assert not recoverable([6, 5], 10, same_units=False)  # 11 visitor-days together
    assert recoverable([6, 5], 10, same_units=True)  # the same 6 meters, twice


def test_days_are_local_and_cut_at_the_ends() -> None:
    start = datetime(2025, 10, 25, 12, tzinfo=PARIS)
    end = datetime(2025, 10, 27, 6, tzinfo=PARIS)
    parts = days(start, end, PARIS)
    assert [p.bucket for p in parts] == ["part", "1d", "part"]
    whole = parts[1]
    assert len(whole) == 1 and whole.seconds(0) == 25 * 3600  # the day the clocks go back
    assert parts[0].start == start and parts[-1].end == end
    m = months(start, end, PARIS)
    assert m.edges == [start, end]
    assert [p.bucket for p in days(datetime(2025, 10, 26, tzinfo=PARIS),
                                   datetime(2025, 10, 28, tzinfo=PARIS), PARIS)] == ["1d"]


def test_a_period_has_whole_hours() -> None:
    with pytest.raises(ValueError, match="whole hours"):
        Period(datetime(2025, 1, 1, 0, 30, tzinfo=UTC), datetime(2025, 1, 2, tzinfo=UTC), PARIS)
    with pytest.raises(ValueError, match="ends after"):
        Period(datetime(2025, 1, 2, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC), PARIS)


def test_csv_conventions() -> None:
    data = ENERGY_DAILY.csv([{"id_quartier": "b", "nom_quartier": "B, nord", "insee": "62041",
                              "debut": "2025-10-26T00:00:00+02:00",
                              "fin": "2025-10-27T00:00:00+01:00", "nb_points_livraison": 4,
                              "energie_soutiree_kwh": None, "complet": True, "estime": False,
                              "secret_statistique": True}])
    text = data.decode("utf-8")
    assert not text.startswith("\ufeff") and text.count("\n") == 2
    row = next(csv.DictReader(io.StringIO(text)))
    assert row["nom_quartier"] == "B, nord" and row["energie_soutiree_kwh"] == ""
    assert row["complet"] == "true" and row["secret_statistique"] == "true"
    fields = {f["name"]: f for f in WIFI_DAILY.schema()["fields"]}
    assert fields["secret_statistique"]["constraints"] == {"required": True}
    assert WIFI_DAILY.schema()["primaryKey"] == ["id_place", "debut"]


def _square(clients: int | None) -> ngsild.SquareState:
    ap = ngsild.ApState("ap-1", "Borne 1", 50.29, 2.78, clients is not None, ("Ville",), None)
    return ngsild.SquareState("sq", "Place", "62041", 50.29, 2.78, clients, [ap])


def test_wifi_entities_hide_small_counts_and_carry_no_mac() -> None:
    at = datetime(2025, 11, 18, 10, tzinfo=UTC)
    org = ngsild.Origin("Ville", "https://ville.example")
    few = ngsild.wifi([_square(4)], at, org, 10)
    many = ngsild.wifi([_square(12)], at, org, 10)
    assert "clientsConnected" not in few[0] and few[0]["statisticalSecrecy"]["value"] is True
    assert many[0]["clientsConnected"]["value"] == 12
    assert ngsild.wifi([_square(None)], at, org, 10)[0]["wifiStatus"]["value"] == "totalFailure"
    for e in few + many:
        assert "macAddress" not in e and not ngsild.schema_errors(e)


def test_energy_entities_of_few_points_carry_no_energy() -> None:
    t = datetime(2025, 11, 18, tzinfo=UTC)
    org = ngsild.Origin("Ville", "https://ville.example")
    (e,) = ngsild.energy([ngsild.DistrictEnergy("d", "D", "62041", None, None, 9, 12.5, 0.0)],
                         t, t, org, 10)
    assert "totalActiveEnergyImport" not in e and e["statisticalSecrecy"]["value"] is True
    assert not ngsild.schema_errors(e)


def test_query_language_subset() -> None:
    kv = {"availableSpotNumber": 12, "status": "free", "name": "Gare"}
    assert parse_q("availableSpotNumber>10")(kv)
    assert parse_q('availableSpotNumber>=12;status=="free"')(kv)
    assert not parse_q("availableSpotNumber<12")(kv)
    assert parse_q("status!=occupied")(kv)
    assert not parse_q("missing==1")(kv)
    assert not parse_q("name>3")(kv)  # a string and a number do not compare: no match
    with pytest.raises(ApiError):
        parse_q("availableSpotNumber")


def test_rate_limiter_counts_per_address_and_minute() -> None:
    lim = RateLimiter()
    assert [lim.allow("a", 2, now=60.0) for _ in range(3)] == [True, True, False]
    assert lim.allow("b", 2, now=61.0)
    assert lim.allow("a", 2, now=120.0)  # a new minute


def test_off_street_zones_are_off_street_parking() -> None:
    at = datetime(2025, 11, 18, 10, tzinfo=UTC)
    org = ngsild.Origin("Ville", "https://ville.example")
    spot = ngsild.SpotState("s1", "Place 1", 50.29, 2.78, "occupied")
    zones = [ngsild.ZoneState(f"z{on}", "Parc", "62041", 50.29, 2.78, on, 10, 4, 5,
                              "Rue X, 62000 Arras", True, [spot]) for on in (True, False)]
    entities = ngsild.parking(zones, at, org)
    assert [e["type"] for e in entities] == ["OnStreetParking", "ParkingSpot",
                                             "OffStreetParking", "ParkingSpot"]
    assert entities[3]["category"]["value"] == ["offStreet"]
    assert entities[3]["refParkingSite"]["object"] == entities[2]["id"]
    assert [err for e in entities for err in ngsild.schema_errors(e)] == []
