"""The tabular datasets: their Table Schemas (Frictionless) and their CSV form.

CSV as schema.data.gouv.fr expects it: UTF-8 without BOM, comma separator, one header line,
dot decimals, ISO 8601 date-times with their UTC offset (local time, Europe/Paris), ``true``
/ ``false``, an empty cell for a value that is unknown or suppressed. Files are written the
same way every time (fixed column order, fixed decimals, ``\\n`` line ends), so a
publication of the same period is byte-identical.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Column:
    """One field of a table: its Table Schema entry and how its values are written."""

    name: str
    type: str  # Table Schema type: string, integer, number, boolean, date, datetime...
    description: str
    required: bool = False
    decimals: int | None = None  # numbers: written with this many decimals
    constraints: Mapping[str, Any] = field(default_factory=dict)

    def schema(self) -> dict[str, Any]:
        """The Table Schema field."""
        out: dict[str, Any] = {"name": self.name, "type": self.type,
                               "description": self.description}
        constraints = dict(self.constraints)
        if self.required:
            constraints["required"] = True
        if constraints:
            out["constraints"] = constraints
        return out

    def cell(self, value: Any) -> str:
        """The CSV text of a value."""
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float) and self.decimals is not None:
            return f"{value:.{self.decimals}f}"
        return str(value)


@dataclass(frozen=True)
class Table:
    """A CSV dataset of the package."""

    name: str  # Data Package resource name; the file is <name>.csv
    title: str
    description: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]

    @property
    def path(self) -> str:
        """File name in the package."""
        return f"{self.name}.csv"

    def schema(self) -> dict[str, Any]:
        """The Table Schema."""
        return {"fields": [c.schema() for c in self.columns], "missingValues": [""],
                "primaryKey": list(self.primary_key)}

    def csv(self, rows: Iterable[Mapping[str, Any]]) -> bytes:
        """The rows as CSV (UTF-8, header line, columns in schema order)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([c.name for c in self.columns])
        for r in rows:
            w.writerow([c.cell(r.get(c.name)) for c in self.columns])
        return buf.getvalue().encode("utf-8")


RATIO = {"minimum": 0, "maximum": 1}
NON_NEGATIVE = {"minimum": 0}
SECRET_DOC = ("true when the counts of this row are not published because they rest on too "
              "few {unit} (statistical secrecy, threshold in the package description); the "
              "suppressed cells are then empty. false otherwise.")


def _period(kind: str) -> tuple[Column, ...]:
    return (
        Column("debut", "datetime", f"Start of the {kind}, local time (Europe/Paris) with its "
               "UTC offset, ISO 8601.", required=True),
        Column("fin", "datetime", f"End of the {kind} (excluded), same form. A month cut by "
               "the start or end of the publication ends or starts there.", required=True),
    )


def _site(prefix: str, what: str) -> tuple[Column, ...]:
    return (
        Column(f"id_{prefix}", "string", f"Identifier of the {what} in the city's registry.",
               required=True),
        Column(f"nom_{prefix}", "string", f"Name of the {what}.", required=True),
        Column("insee", "string", "INSEE code of the commune.", required=True,
               constraints={"pattern": "^([013-9][0-9]|2[AB1-9])[0-9]{3}$"}),
    )


def _parking(period: str) -> Table:
    name = "horaire" if period == "hour" else "journaliere"
    return Table(
        f"occupation-stationnement-{name}",
        f"Occupation des zones de stationnement par {'heure' if period == 'hour' else 'jour'}",
        f"Per parking zone and {period} (local time): time-weighted occupancy measured by the "
        "spot sensors, mean free spots, arrivals and turnover.",
        (*_site("zone", "parking zone"),
         Column("id_lieu", "string", "National id of the parking place (schema-stationnement "
                "id), empty when the zone is not published as a parking place."),
         *_period(period),
         Column("capacite", "integer", "Spots of the zone.", required=True,
                constraints=NON_NEGATIVE),
         Column("taux_occupation", "number", "Occupied spot-time / (capacity x duration), "
                "0..1; empty when the zone has no capacity.", decimals=4, constraints=RATIO),
         Column("taux_occupation_connu", "number", "Occupied / (occupied + free) spot-time, "
                "over the spots whose state is known, 0..1; empty when none is known.",
                decimals=4, constraints=RATIO),
         Column("part_inconnue", "number", "Share of spot-time of unknown state (sensor silent "
                "for 3 heartbeats, or no sensor), 0..1.", decimals=4, constraints=RATIO),
         Column("places_libres_moyenne", "number", "Free spots on average over the "
                f"{period} (known free spot-time / duration).", decimals=2,
                constraints=NON_NEGATIVE),
         Column("arrivees", "integer", f"Vehicles arriving in the {period} (sensor changes to "
                "occupied); empty when no sensor state is known in the period.",
                constraints=NON_NEGATIVE),
         Column("rotation", "number", "Arrivals per spot of the capacity.", decimals=3,
                constraints=NON_NEGATIVE),
         Column("duree_moyenne_stationnement_s", "integer", "Mean stay in seconds of the "
                "arrivals whose stay ended within 24 hours; empty when none.",
                constraints=NON_NEGATIVE)),
        ("id_zone", "debut"))


def _wifi(period: str) -> Table:
    monthly = period == "month"
    visitors = (
        Column("visiteurs_jours", "integer", "Sum over the days of the month of the daily "
               "unique visitors (devices are counted once per day: their pseudonymous keys "
               "change every day, so a person seen on 3 days counts 3).",
               constraints=NON_NEGATIVE)
        if monthly else
        Column("visiteurs_uniques", "integer", "Distinct devices seen on the square's access "
               "points that day.", constraints=NON_NEGATIVE))
    return Table(
        f"frequentation-wifi-{'mensuelle' if monthly else 'journaliere'}",
        f"Fréquentation du wifi public par place et par {'mois' if monthly else 'jour'}",
        f"Per square and {'month' if monthly else 'day'} (local time): use of the public "
        "wifi. Counts under the threshold are suppressed.",
        (*_site("place", "square"), *_period(period),
         Column("bornes_actives", "integer", "Access points of the square that reported in "
                "the period; 0: no measure (the other cells are then empty).", required=True,
                constraints=NON_NEGATIVE),
         visitors,
         Column("associations", "integer", "Connections (associations) to the access points.",
                constraints=NON_NEGATIVE),
         Column("sessions_terminees", "integer", "Sessions that ended (disassociations) with "
                "a known length.", constraints=NON_NEGATIVE),
         Column("duree_moyenne_s", "integer", "Mean length of those sessions, seconds.",
                constraints=NON_NEGATIVE),
         Column("secret_statistique", "boolean", SECRET_DOC.format(unit="devices or sessions"),
                required=True)),
        ("id_place", "debut"))


def _energy(period: str) -> Table:
    monthly = period == "month"
    return Table(
        f"consommation-electrique-{'mensuelle' if monthly else 'journaliere'}",
        f"Consommation électrique par quartier et par {'mois' if monthly else 'jour'}",
        f"Per district and {'month' if monthly else 'day'} (local time): energy drawn from "
        "and fed into the grid by the smart meters, and how many delivery points it sums. "
        "Aggregates over fewer delivery points than the threshold are not published.",
        (*_site("quartier", "district"), *_period(period),
         Column("nb_points_livraison", "integer", "Delivery points (meters) with readings in "
                "the period.", required=True, constraints=NON_NEGATIVE),
         Column("energie_soutiree_kwh", "number", "Energy drawn from the grid, kWh.",
                decimals=3, constraints=NON_NEGATIVE),
         Column("energie_injectee_kwh", "number", "Energy fed into the grid (e.g. solar), kWh.",
                decimals=3, constraints=NON_NEGATIVE),
         Column("complet", "boolean", "Every meter of the district has readings at both ends "
                "of the period.", required=True),
         Column("estime", "boolean", "Part of the energy is shared across a communication gap "
                "in proportion to time, or a meter was replaced.", required=True),
         Column("secret_statistique", "boolean", SECRET_DOC.format(unit="delivery points"),
                required=True)),
        ("id_quartier", "debut"))


PARKING_HOURLY = _parking("hour")
PARKING_DAILY = _parking("day")
WIFI_DAILY = _wifi("day")
WIFI_MONTHLY = _wifi("month")
ENERGY_DAILY = _energy("day")
ENERGY_MONTHLY = _energy("month")
TABLES: Sequence[Table] = (PARKING_HOURLY, PARKING_DAILY, WIFI_DAILY, WIFI_MONTHLY,
                           ENERGY_DAILY, ENERGY_MONTHLY)

__all__ = ["ENERGY_DAILY", "ENERGY_MONTHLY", "PARKING_DAILY", "PARKING_HOURLY", "TABLES",
           "WIFI_DAILY", "WIFI_MONTHLY", "Column", "Table"]
