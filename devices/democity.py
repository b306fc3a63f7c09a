"""The demo city: Arras (Pas-de-Calais, INSEE 62041), built deterministically from a seed.

``python -m devices.democity > devices/data/demo-city.json`` regenerates the committed file.
Two pedestrian squares with 8 wifi APs, three parking zones with 300 spot sensors
(LoRaWAN, each with a DevEUI) and 12 parking meters, two districts with 500 Linky meters
(each with its delivery point's 14-digit PRM and its own 12-digit serial, the ADSC of its
TIC frames).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

DEMO_CITY_FILE = Path(__file__).resolve().parent / "data" / "demo-city.json"
"""The committed output of ``build_demo_city()`` (the default seed)."""

INSEE = "62041"  # Arras
DEFAULT_SEED = 62041
METRES_PER_DEGREE = 111_320.0
DEV_EUI_BASE = 0x70B3D57ED0000000  # 70-B3-D5: an IEEE block many LoRaWAN vendors use
PMR_SHARE = 0.03  # French law asks for at least 2 % of spots reserved to disabled drivers
CITY_SIRET = "21620041000019"  # Commune d'Arras: SIREN 21 + INSEE + check digit, Luhn-valid


@dataclass(frozen=True)
class _Square:
    id: str
    short: str  # in device ids
    name: str
    lat: float
    lon: float
    aps: int


@dataclass(frozen=True)
class _Zone:
    id: str
    short: str
    name: str
    lat: float
    lon: float
    radius_m: float
    spots: int
    meters: int
    tariff_zone: str
    off_street: bool
    address: str
    ev_spots: int
    tariffs_eur: tuple[float | None, ...]  # 1h, 2h, 3h, 4h, 24h (None: stay not allowed)
    resident_eur: float | None  # monthly resident subscription


@dataclass(frozen=True)
class _District:
    id: str
    short: str
    name: str
    lat: float
    lon: float
    radius_m: float
    meters: int
    professional_share: float


SQUARES = (
    _Square("grand-place", "grand-place", "Grand'Place", 50.29195, 2.78063, 5),
    _Square("place-des-heros", "heros", "Place des Héros", 50.29111, 2.77756, 3),
)
ZONES = (
    _Zone("parking-grand-place", "grand-place", "Stationnement Grand'Place", 50.29195, 2.78063,
          90, 130, 5, "rouge", False, "Grand'Place, 62000 Arras", 4,
          (1.6, 3.4, None, None, None), 25.0),
    _Zone("parking-gare", "gare", "Stationnement Gare", 50.28667, 2.78185, 120, 100, 3,
          "verte", False, "Place du Maréchal Foch, 62000 Arras", 2,
          (1.0, 2.0, 3.0, 4.0, 6.5), 20.0),
    _Zone("parking-centre-ville", "centre", "Stationnement Centre-ville", 50.28910, 2.77920,
          250, 70, 4, "rouge", False, "Rue Gambetta, 62000 Arras", 0,
          (1.6, 3.4, None, None, None), 25.0),
)
DISTRICTS = (
    _District("baudimont", "baudimont", "Quartier Baudimont", 50.29420, 2.76580, 650, 280,
              0.08),
    _District("saint-michel", "saint-michel", "Quartier Saint-Michel", 50.27980, 2.79060, 700,
              220, 0.15),
)


def _scatter(rng: random.Random, lat: float, lon: float, radius_m: float) -> tuple[float, float]:
    """A point uniformly spread within ``radius_m`` of a centre (WGS 84, 6 decimals ~ 0.1 m)."""
    r = radius_m * math.sqrt(rng.random())
    theta = rng.uniform(0, 2 * math.pi)
    dlat = r * math.cos(theta) / METRES_PER_DEGREE
    dlon = r * math.sin(theta) / (METRES_PER_DEGREE * math.cos(math.radians(lat)))
    return round(lat + dlat, 6), round(lon + dlon, 6)


def _installed(rng: random.Random, start: datetime, days: int) -> str:
    """A working-hours install time within ``days`` after ``start``, ISO 8601 UTC."""
    t = start + timedelta(days=rng.randrange(days), hours=rng.randrange(7, 16))
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _prm(rng: random.Random, taken: set[str]) -> str:
    """A unique 14-digit PRM-like meter id."""
    while True:
        prm = f"{rng.randrange(1, 3)}{rng.randrange(10**13):013d}"
        if prm not in taken:
            taken.add(prm)
            return prm


def _serial(rng: random.Random, installed: str, phases: int, taken: set[str]) -> str:
    """A unique 12-digit Linky serial (ADSC) laid out like Enedis's: manufacturer code (2),
    year of manufacture (2), meter type (2: single- or three-phase), number (6)."""
    year = int(installed[2:4]) - rng.randrange(2)
    kind = rng.choice(("61", "64")) if phases == 1 else "63"
    while True:
        serial = f"{rng.choice(('02', '03', '04', '06'))}{year:02d}{kind}{rng.randrange(10**6):06d}"
        if serial not in taken:
            taken.add(serial)
            return serial


def _parking_place(z: _Zone, k: int, pmr_spots: int) -> dict[str, Any]:
    """The zone as the national parking-places schema describes it (on-street, paid,
    open to all; PMR spots park at the normal tariff)."""
    place: dict[str, Any] = {
        "national_id": f"{INSEE}-P-{k:03d}", "address": z.address, "users": "all",
        "free": False, "pmr_spots": pmr_spots, "ev_spots": z.ev_spots,
        "operator_siret": CITY_SIRET, "pmr_tariff": "normal"}
    for hours, eur in zip(("1h", "2h", "3h", "4h", "24h"), z.tariffs_eur, strict=True):
        if eur is not None:
            place[f"tariff_{hours}_eur"] = eur
    if z.resident_eur is not None:
        place["resident_subscription_eur"] = z.resident_eur
    place["info"] = (f"Stationnement payant sur voirie, zone {z.tariff_zone}, du lundi au "
                     "samedi de 9 h à 19 h ; gratuit le dimanche et les jours fériés.")
    return place


def build_demo_city(seed: int = DEFAULT_SEED) -> dict[str, list[dict[str, Any]]]:
    """The demo city as a registry document ``{"sites": [...], "devices": [...]}``."""
    rng = random.Random(seed)
    sites: list[dict[str, Any]] = []
    devices: list[dict[str, Any]] = []

    for sq in SQUARES:
        sites.append({"id": sq.id, "kind": "square", "name": sq.name, "insee": INSEE,
                      "latitude": sq.lat, "longitude": sq.lon, "capacity": None,
                      "metadata": {"pedestrian": True}})
        for n in range(1, sq.aps + 1):
            lat, lon = _scatter(rng, sq.lat, sq.lon, 70)
            devices.append({
                "id": f"ap-{sq.short}-{n:02d}", "family": "wifi_ap", "site_id": sq.id,
                "name": f"Borne wifi {sq.name} {n}", "latitude": lat, "longitude": lon,
                "installed_at": _installed(rng, datetime(2022, 4, 1, tzinfo=UTC), 60),
                "metadata": {"ssid": "Arras-WiFi-Public", "bands": ["2.4GHz", "5GHz"]},
            })

    eui = DEV_EUI_BASE
    for k, z in enumerate(ZONES, start=1):
        n_pmr = max(1, round(z.spots * PMR_SHARE))
        sites.append({"id": z.id, "kind": "parking_zone", "name": z.name, "insee": INSEE,
                      "latitude": z.lat, "longitude": z.lon, "capacity": z.spots,
                      "metadata": {"category": "offStreet" if z.off_street else "onStreet",
                                   "tariff_zone": z.tariff_zone},
                      "parking": _parking_place(z, k, n_pmr)})
        pmr = set(rng.sample(range(1, z.spots + 1), n_pmr))
        for n in range(1, z.spots + 1):
            eui += 1
            lat, lon = _scatter(rng, z.lat, z.lon, z.radius_m)
            devices.append({
                "id": f"spot-{z.short}-{n:03d}", "family": "parking_spot", "site_id": z.id,
                "name": f"Place {n} ({z.name.removeprefix('Stationnement ')})",
                "latitude": lat, "longitude": lon, "dev_eui": f"{eui:016x}",
                "installed_at": _installed(rng, datetime(2023, 3, 6, tzinfo=UTC), 30),
                "metadata": {"pmr": n in pmr},
            })
        for n in range(1, z.meters + 1):
            lat, lon = _scatter(rng, z.lat, z.lon, z.radius_m)
            devices.append({
                "id": f"meter-{z.short}-{n:02d}", "family": "parking_meter", "site_id": z.id,
                "name": f"Horodateur {z.name.removeprefix('Stationnement ')} {n}",
                "latitude": lat, "longitude": lon,
                "installed_at": _installed(rng, datetime(2021, 9, 1, tzinfo=UTC), 90),
                "metadata": {"payment": ["card", "contactless", "coins"],
                             "tariff_zone": z.tariff_zone},
            })

    prms: set[str] = set()
    serials: set[str] = set()
    # Serials come from a generator of their own, so that adding them left every other
    # value of the city as it was.
    serial_rng = random.Random(f"{seed}/meter-serials")
    for d in DISTRICTS:
        sites.append({"id": d.id, "kind": "district", "name": d.name, "insee": INSEE,
                      "latitude": d.lat, "longitude": d.lon, "capacity": None,
                      "metadata": {}})
        for n in range(1, d.meters + 1):
            professional = rng.random() < d.professional_share
            phases = 3 if rng.random() < (0.7 if professional else 0.15) else 1
            pref = (rng.choice((36, 24, 18)) if professional
                    else rng.choice((6, 6, 9, 9, 12)) if phases == 1 else rng.choice((9, 12, 15)))
            lat, lon = _scatter(rng, d.lat, d.lon, d.radius_m)
            prm = _prm(rng, prms)
            installed = _installed(rng, datetime(2018, 6, 1, tzinfo=UTC), 900)
            devices.append({
                "id": f"linky-{d.short}-{n:04d}", "family": "grid_meter", "site_id": d.id,
                "name": f"Compteur Linky {d.name.removeprefix('Quartier ')} {n}",
                "latitude": lat, "longitude": lon, "meter_id": prm,
                "meter_serial": _serial(serial_rng, installed, phases, serials),
                "installed_at": installed,
                "metadata": {"profile": "professional" if professional else "residential",
                             "phases": phases, "pref_kva": pref,
                             "solar": rng.random() < 0.08},
            })
    return {"sites": sites, "devices": devices}


def dumps(city: dict[str, list[dict[str, Any]]]) -> str:
    """JSON with one record per line: readable, and diffs stay small."""
    parts = []
    for key in ("sites", "devices"):
        rows = ",\n".join("    " + json.dumps(r, ensure_ascii=False) for r in city[key])
        parts.append(f'  "{key}": [\n{rows}\n  ]')
    return "{\n" + ",\n".join(parts) + "\n}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write the demo city's registry JSON to stdout."""
    parser = argparse.ArgumentParser(prog="python -m devices.democity", description=__doc__)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
    args = parser.parse_args(argv)
    sys.stdout.write(dumps(build_demo_city(args.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
