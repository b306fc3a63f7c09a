"""The parking-place fields of a parking zone (national schema-stationnement needs)."""

from __future__ import annotations

from typing import Any

import pytest

from devices.registry import RegistryFileError, parse_registry

PLACE = {"national_id": "62041-P-009", "users": "all", "free": False, "pmr_spots": 2,
         "operator_siret": "21620041000019"}
ZONE = {"id": "p9", "kind": "parking_zone", "name": "P9", "insee": "62041",
        "latitude": 50.29, "longitude": 2.78, "capacity": 40}


def _errors(site: dict[str, Any]) -> str:
    with pytest.raises(RegistryFileError) as info:
        parse_registry({"sites": [site]})
    return str(info.value)


def test_a_zone_with_its_parking_place_loads() -> None:
    reg = parse_registry({"sites": [{**ZONE, "parking": {**PLACE, "tariff_1h_eur": 1.5}}]})
    place = reg.sites[0].parking
    assert place is not None and place.tariff_1h_eur == 1.5 and place.max_height_cm is None


@pytest.mark.parametrize(("change", "message"), [
    ({"kind": "square"}, "only a parking_zone site"),
    ({"capacity": None}, "needs the site's capacity"),
    ({"latitude": None}, "needs the site's latitude"),
    ({"insee": "62040"}, "must start with the site's INSEE code"),
    ({"capacity": 1}, "pmr_spots is more than the capacity"),
])
def test_the_site_must_give_what_the_schema_needs(change: dict[str, Any], message: str) -> None:
    assert message in _errors({**ZONE, **change, "parking": PLACE})


@pytest.mark.parametrize(("field", "value", "message"), [
    ("national_id", "62041-9", "national parking id"),
    ("operator_siret", "2162004100001", "SIRET"),
    ("users", "residents", "users"),
    ("tariff_1h_eur", -1, "tariff_1h_eur"),
    ("colour", "red", "colour"),
])
def test_bad_parking_fields(field: str, value: Any, message: str) -> None:
    assert message in _errors({**ZONE, "parking": {**PLACE, field: value}})
