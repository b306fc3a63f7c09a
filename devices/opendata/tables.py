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
SECRET_DOC = ("true quand les comptages de la ligne ne sont pas publiés parce qu'ils reposent "
              "sur trop peu {unit} (secret statistique, seuil dans la description du "
              "jeu de données) : les cellules masquées sont alors vides. false sinon.")


_OF = {"hour": "de l'heure", "day": "du jour", "month": "du mois"}
_IN = {"hour": "dans l'heure", "day": "dans la journée", "month": "dans le mois"}


def _period(kind: str) -> tuple[Column, ...]:
    return (
        Column("debut", "datetime", f"Début {_OF[kind]}, heure locale (Europe/Paris) avec son "
               "décalage UTC, ISO 8601.", required=True),
        Column("fin", "datetime", f"Fin {_OF[kind]} (exclue), même forme. Un jour ou un mois "
               "coupé par le début ou la fin de la publication commence ou finit là.",
               required=True),
    )


def _site(prefix: str, of_what: str) -> tuple[Column, ...]:
    return (
        Column(f"id_{prefix}", "string", f"Identifiant {of_what} dans le registre de la ville.",
               required=True),
        Column(f"nom_{prefix}", "string", f"Nom {of_what}.", required=True),
        Column("insee", "string", "Code INSEE de la commune.", required=True,
               constraints={"pattern": "^([013-9][0-9]|2[AB1-9])[0-9]{3}$"}),
    )


def _parking(period: str) -> Table:
    name = "horaire" if period == "hour" else "journaliere"
    unit = "heure" if period == "hour" else "jour"
    return Table(
        f"occupation-stationnement-{name}",
        f"Occupation des zones de stationnement par {unit}",
        f"Par zone de stationnement et par {unit} (heure locale) : occupation pondérée par le "
        "temps mesurée par les capteurs de places, places libres en moyenne, arrivées et "
        "rotation.",
        (*_site("zone", "de la zone de stationnement"),
         Column("id_lieu", "string", "Identifiant national du lieu de stationnement (id du "
                "schéma etalab/schema-stationnement) ; vide si la zone n'est pas publiée comme "
                "lieu de stationnement."),
         *_period(period),
         Column("capacite", "integer", "Nombre de places de la zone.", required=True,
                constraints=NON_NEGATIVE),
         Column("taux_occupation", "number", "Temps-place occupé / (capacité x durée), de 0 "
                "à 1 ; vide si l'état d'aucune place n'est connu.", decimals=4,
                constraints=RATIO),
         Column("taux_occupation_connu", "number", "Temps-place occupé / (occupé + libre), "
                "sur les places dont l'état est connu, de 0 à 1 ; vide si aucun n'est connu.",
                decimals=4, constraints=RATIO),
         Column("part_inconnue", "number", "Part du temps-place d'état inconnu (capteur muet "
                "depuis 3 battements, ou place sans capteur), de 0 à 1.", decimals=4,
                constraints=RATIO),
         Column("places_libres_moyenne", "number", f"Places libres en moyenne {_IN[period]} "
                "(temps-place libre connu / durée) ; vide si aucun état n'est connu.",
                decimals=2, constraints=NON_NEGATIVE),
         Column("arrivees", "integer", f"Véhicules arrivés {_IN[period]} (passages d'un "
                "capteur à occupé) ; vide si aucun état n'est connu.",
                constraints=NON_NEGATIVE),
         Column("rotation", "number", "Arrivées par place de la capacité.", decimals=3,
                constraints=NON_NEGATIVE),
         Column("duree_moyenne_stationnement_s", "integer", "Durée moyenne de stationnement, "
                "en secondes, des arrivées dont le stationnement a fini dans les 24 heures ; "
                "vide s'il n'y en a pas.", constraints=NON_NEGATIVE)),
        ("id_zone", "debut"))


def _wifi(period: str) -> Table:
    monthly = period == "month"
    unit = "mois" if monthly else "jour"
    visitors = (
        Column("visiteurs_jours", "integer", "Somme sur les jours du mois des visiteurs "
               "uniques de chaque jour (un appareil est compté une fois par jour : ses clés "
               "pseudonymes changent chaque jour, une personne vue 3 jours compte donc 3).",
               constraints=NON_NEGATIVE)
        if monthly else
        Column("visiteurs_uniques", "integer", "Appareils distincts vus par les bornes de la "
               "place ce jour-là.", constraints=NON_NEGATIVE))
    return Table(
        f"frequentation-wifi-{'mensuelle' if monthly else 'journaliere'}",
        f"Fréquentation du wifi public par place et par {unit}",
        f"Par place piétonne et par {unit} (heure locale) : usage du wifi public. Les "
        "comptages sous le seuil du secret statistique sont masqués.",
        (*_site("place", "de la place"), *_period(period),
         Column("bornes_actives", "integer", "Bornes de la place ayant émis dans la période ; "
                "0 : pas de mesure (les autres cellules sont alors vides).", required=True,
                constraints=NON_NEGATIVE),
         visitors,
         Column("associations", "integer", "Connexions (associations) aux bornes.",
                constraints=NON_NEGATIVE),
         Column("sessions_terminees", "integer", "Sessions terminées (déconnexions) de durée "
                "connue.", constraints=NON_NEGATIVE),
         Column("duree_moyenne_s", "integer", "Durée moyenne de ces sessions, en secondes.",
                constraints=NON_NEGATIVE),
         Column("secret_statistique", "boolean", SECRET_DOC.format(unit="d'appareils ou de "
                "sessions"), required=True)),
        ("id_place", "debut"))


def _energy(period: str) -> Table:
    monthly = period == "month"
    unit = "mois" if monthly else "jour"
    return Table(
        f"consommation-electrique-{'mensuelle' if monthly else 'journaliere'}",
        f"Consommation électrique par quartier et par {unit}",
        f"Par quartier et par {unit} (heure locale) : énergie soutirée du réseau et injectée "
        "par les compteurs communicants, et le nombre de points de livraison qu'elle somme. "
        "Un agrégat sur moins de points de livraison que le seuil n'est pas publié.",
        (*_site("quartier", "du quartier"), *_period(period),
         Column("nb_points_livraison", "integer", "Points de livraison (compteurs) ayant des "
                "relevés dans la période.", required=True, constraints=NON_NEGATIVE),
         Column("energie_soutiree_kwh", "number", "Énergie soutirée du réseau, kWh.",
                decimals=3, constraints=NON_NEGATIVE),
         Column("energie_injectee_kwh", "number", "Énergie injectée dans le réseau (par "
                "exemple photovoltaïque), kWh.", decimals=3, constraints=NON_NEGATIVE),
         Column("complet", "boolean", "Chaque compteur du quartier a des relevés aux deux "
                "bornes de la période.", required=True),
         Column("estime", "boolean", "Une part de l'énergie est répartie au prorata du temps "
                "sur un trou de communication, ou un compteur a été remplacé.",
                required=True),
         Column("secret_statistique", "boolean", SECRET_DOC.format(unit="de points de "
                "livraison"), required=True)),
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
