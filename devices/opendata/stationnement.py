"""Parking places in the national schema ``etalab/schema-stationnement`` (0.1.5, shipped in
``schemas/schema-stationnement/``): one row per parking zone the registry describes with a
``parking`` object, as CSV (the schema's own columns and order) and as GeoJSON points."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from functools import cache
from importlib import resources
from typing import Any

from devices.opendata.tables import Column, Table
from devices.registry import ParkingPlace, Site

SCHEMA_VERSION = "0.1.5"
SCHEMA_FILE = "schema-stationnement/schema.json"
SCHEMA_URL = ("https://schema.data.gouv.fr/schemas/etalab/schema-stationnement/"
              f"{SCHEMA_VERSION}/schema.json")
RESOURCE = "lieux-stationnement"

_USERS = {"all": "tous", "subscribers": "abonnés"}
_PMR_TARIFF = {"free": "gratuit", "normal": "normal_payant", "special": "tarif_special"}
_STRUCTURE = {"surface": "enclos_en_surface", "building": "ouvrage"}


def read_schema_file(relative: str) -> dict[str, Any]:
    """A schema shipped in ``devices/opendata/schemas/``."""
    text = resources.files("devices.opendata").joinpath("schemas", relative).read_text(
        encoding="utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc


@cache
def official_schema() -> dict[str, Any]:
    """The national Table Schema, as published (pinned copy)."""
    return read_schema_file(SCHEMA_FILE)


def _decimals(name: str) -> int | None:
    if name in ("Xlong", "Ylat"):
        return 6
    return 2 if name.startswith(("tarif_", "abo_")) else None


def table() -> Table:
    """The places table: the official fields, written in their order."""
    fields = official_schema()["fields"]
    cols = tuple(Column(f["name"], f["type"], f.get("description", ""),
                        decimals=_decimals(f["name"])) for f in fields)
    return Table(RESOURCE, "Lieux de stationnement (schéma national)",
                 "Les zones de stationnement de la ville au schéma national des lieux de "
                 f"stationnement etalab/schema-stationnement {SCHEMA_VERSION}.", cols,
                 ("id",))


def place_row(site: Site, place: ParkingPlace) -> dict[str, Any]:
    """One row of the national schema for a parking zone and its registry description."""
    if site.latitude is None or site.longitude is None or site.capacity is None:
        raise ValueError(f"site {site.id}: a parking place needs coordinates and a capacity")
    row: dict[str, Any] = {
        "id": place.national_id, "nom": site.name.upper(), "insee": site.insee,
        "adresse": place.address, "url": place.url, "type_usagers": _USERS[place.users],
        "gratuit": place.free, "nb_places": site.capacity, "nb_pmr": place.pmr_spots,
        "nb_voitures_electriques": place.ev_spots,
        "hauteur_max": "N/A" if place.max_height_cm is None else str(place.max_height_cm),
        "num_siret": place.operator_siret,
        "Xlong": float(site.longitude), "Ylat": float(site.latitude),
        "tarif_pmr": _PMR_TARIFF.get(place.pmr_tariff or ""),
        "tarif_1h": place.tariff_1h_eur, "tarif_2h": place.tariff_2h_eur,
        "tarif_3h": place.tariff_3h_eur, "tarif_4h": place.tariff_4h_eur,
        "tarif_24h": place.tariff_24h_eur,
        "abo_resident": place.resident_subscription_eur,
        "abo_non_resident": place.non_resident_subscription_eur,
        "type_ouvrage": _STRUCTURE.get(place.structure or ""), "info": place.info,
    }
    return {k: float(v) if isinstance(v, int) and not isinstance(v, bool)
            and k.startswith(("tarif_", "abo_")) else v for k, v in row.items()}


def rows(places: Iterable[tuple[Site, ParkingPlace]]) -> list[dict[str, Any]]:
    """Rows by national id."""
    return sorted((place_row(s, p) for s, p in places), key=lambda r: str(r["id"]))


def geojson(rows: Sequence[dict[str, Any]]) -> bytes:
    """The rows as a GeoJSON FeatureCollection of points (WGS 84), same properties."""
    features = [{"type": "Feature", "id": r["id"],
                 "geometry": {"type": "Point", "coordinates": [r["Xlong"], r["Ylat"]]},
                 "properties": {k: v for k, v in r.items() if k not in ("Xlong", "Ylat")}}
                for r in rows]
    doc = {"type": "FeatureCollection", "features": features}
    return (json.dumps(doc, ensure_ascii=False, indent=1, sort_keys=False) + "\n").encode()


__all__ = ["RESOURCE", "SCHEMA_URL", "SCHEMA_VERSION", "geojson", "official_schema",
           "place_row", "read_schema_file", "rows", "table"]
