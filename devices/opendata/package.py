"""The Frictionless Data Package (``datapackage.json``) describing every published file.

Every file is listed with its size and SHA-256, CSV files with their Table Schema (the
national one for the parking places), under the Licence Ouverte 2.0 (``etalab-2.0``), with
the producer, the spatial coverage (INSEE codes and bounding box), the temporal coverage
(the period published) and the update frequency. Nothing in it depends on when it was
written, so the same period gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from devices.opendata.secrecy import Thresholds

LICENCE = {"name": "etalab-2.0", "title": "Licence Ouverte / Open Licence version 2.0",
           "path": "https://www.etalab.gouv.fr/licence-ouverte-open-licence"}
SDM_LICENCE = {"name": "CC-BY-4.0", "title": "Creative Commons Attribution 4.0",
               "path": "https://creativecommons.org/licenses/by/4.0/"}


@dataclass(frozen=True)
class FileEntry:
    """One published file and how the package describes it."""

    name: str
    path: str
    title: str
    description: str
    data: bytes
    format: str  # csv, geojson, json
    schema: Mapping[str, Any] | None = None
    profile: str | None = None  # e.g. the URL of the national schema it follows

    def resource(self) -> dict[str, Any]:
        """The Data Package resource."""
        media = {"csv": "text/csv", "geojson": "application/geo+json",
                 "json": "application/json"}[self.format]
        out: dict[str, Any] = {
            "name": self.name, "path": self.path, "title": self.title,
            "description": self.description, "format": self.format, "mediatype": media,
            "encoding": "utf-8", "bytes": len(self.data),
            "hash": f"sha256:{hashlib.sha256(self.data).hexdigest()}"}
        if self.format == "csv":
            out["dialect"] = {"delimiter": ",", "header": True}
        if self.schema is not None:
            out["schema"] = dict(self.schema)
        if self.profile is not None:
            out["sources"] = [{"title": "Schéma de référence", "path": self.profile}]
        return out


@dataclass(frozen=True)
class Coverage:
    """What a publication covers."""

    start: datetime  # local time, with offset
    end: datetime
    timezone: str
    insee: Sequence[str]
    bbox: tuple[float, float, float, float] | None  # lon/lat min, lon/lat max


def descriptor(files: Sequence[FileEntry], coverage: Coverage, *, producer: str,
               producer_url: str, thresholds: Thresholds) -> dict[str, Any]:
    """The ``datapackage.json`` document."""
    insee = sorted(set(coverage.insee))
    return {
        "name": f"beffroi-donnees-ouvertes-{'-'.join(insee) or 'ville'}",
        "title": f"{producer} : équipements connectés (stationnement, wifi public, "
                 "électricité)",
        "description": (
            "Agrégats des équipements connectés de la ville : lieux de stationnement (schéma "
            "national etalab/schema-stationnement), occupation des zones de stationnement par "
            "heure et par jour, fréquentation du wifi public par place et par jour ou mois, "
            "consommation électrique par quartier et par jour ou mois, et entités NGSI-LD des "
            "FIWARE Smart Data Models. Aucune ligne ne concerne une personne, un foyer ou une "
            "transaction. Secret statistique : les cellules wifi reposant sur moins de "
            f"{thresholds.wifi} appareils ou sessions et les agrégats électriques sur moins de "
            f"{thresholds.energy_points} points de livraison (décret n° 2020-196 du 4 mars "
            "2020) sont vides et marqués secret_statistique = true. Heures locales "
            f"({coverage.timezone}) avec leur décalage UTC. / Aggregates of the city's "
            "connected equipment; small counts suppressed and flagged; local times with their "
            "UTC offset."),
        "licenses": [LICENCE],
        "contributors": [{"title": producer, "path": producer_url, "role": "publisher"}],
        "keywords": ["stationnement", "wifi", "électricité", "smart city", "open data",
                     "NGSI-LD"],
        "homepage": producer_url,
        "created": coverage.end.isoformat(),
        "temporal": {"start": coverage.start.isoformat(), "end": coverage.end.isoformat(),
                     "timezone": coverage.timezone},
        "spatial": {"insee": insee,
                    **({"bbox": list(coverage.bbox)} if coverage.bbox else {})},
        "frequency": "daily",
        "statistical_secrecy": {"wifi_min_count": thresholds.wifi,
                                "energy_min_delivery_points": thresholds.energy_points},
        "resources": [f.resource() for f in files],
    }


def dumps(doc: Mapping[str, Any]) -> bytes:
    """JSON as the package writes it (UTF-8, indented, stable)."""
    return (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


__all__ = ["LICENCE", "Coverage", "FileEntry", "descriptor", "dumps"]
