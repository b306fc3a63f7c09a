"""The registry in PostgreSQL: import a registry file in one transaction, read it back."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from devices.families import KINDS_OF_FAMILY, Family
from devices.registry import (
    SITE_KIND_OF_FAMILY,
    Device,
    ParkingPlace,
    RegistryFile,
    RegistryFileError,
    RowError,
    Site,
    SiteKind,
    cross_check,
)

log = logging.getLogger(__name__)

IMPORT_LOCK_ID = 0x62656667  # advisory lock: two imports never interleave their checks

_SITE_COLS = ("id", "kind", "name", "insee", "latitude", "longitude", "capacity", "metadata")
_DEVICE_COLS = ("id", "family", "site_id", "name", "latitude", "longitude", "dev_eui",
                "meter_id", "meter_serial", "report_interval_s", "installed_at", "active",
                "metadata")


def _upsert_sql(table: str, cols: Sequence[str]) -> str:
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c != "id")
    return (f"INSERT INTO {table} ({', '.join(cols)}) "
            f"VALUES ({', '.join(['%s'] * len(cols))}) "
            f"ON CONFLICT (id) DO UPDATE SET {updates}, updated_at = now() "
            "RETURNING (xmax = 0) AS inserted")


_UPSERT_SITE = _upsert_sql("sites", _SITE_COLS)
_UPSERT_DEVICE = _upsert_sql("devices", _DEVICE_COLS)
PARKING_COLS = ("site_id", *ParkingPlace.model_fields)
_UPSERT_PARKING = (
    f"INSERT INTO parking_places ({', '.join(PARKING_COLS)}) "
    f"VALUES ({', '.join(['%s'] * len(PARKING_COLS))}) ON CONFLICT (site_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in PARKING_COLS if c != "site_id")
    + ", updated_at = now()")


@dataclass(frozen=True)
class ImportResult:
    """What an import changed."""

    sites_inserted: int = 0
    sites_updated: int = 0
    devices_inserted: int = 0
    devices_updated: int = 0


def import_registry(conn: psycopg.Connection[Any], reg: RegistryFile, *,
                    dry_run: bool = False) -> ImportResult:
    """Upsert the file's sites and devices in one transaction; all or nothing.

    Checks the file against the database first: devices may refer to sites already in the
    database, a DevEUI, PRM or meter serial may not belong to another device there, and a
    site whose kind changes must still suit the devices left on it. Raises ``RegistryFileError``
    listing every problem. With ``dry_run`` everything is checked and rolled back.
    """
    result = ImportResult()
    try:
        with conn.transaction() as tx:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (IMPORT_LOCK_ID,))
            errors = _check_against_db(conn, reg)
            if errors:
                raise RegistryFileError("import", errors)
            site_counts = _upsert(conn, _UPSERT_SITE, [_site_params(s) for s in reg.sites])
            _write_parking_places(conn, reg.sites)
            dev_counts = _upsert(conn, _UPSERT_DEVICE, [_device_params(d) for d in reg.devices])
            result = ImportResult(*site_counts, *dev_counts)
            if dry_run:
                raise psycopg.Rollback(tx)
    except psycopg.IntegrityError as exc:
        # The checks above should make this unreachable; keep the database's word if not.
        raise RegistryFileError("import", [RowError("database", None, str(exc))]) from exc
    log.info("registry %s: %s", "checked (dry run)" if dry_run else "imported", result)
    return result


def _upsert(conn: psycopg.Connection[Any], query: str,
            params: list[tuple[Any, ...]]) -> tuple[int, int]:
    """Run an upsert per row; return (inserted, updated)."""
    if not params:
        return 0, 0
    inserted = 0
    with conn.cursor() as cur:
        cur.executemany(query, params, returning=True)
        while True:
            row = cur.fetchone()
            if row is not None and row[0]:
                inserted += 1
            if not cur.nextset():
                break
    return inserted, len(params) - inserted


def _write_parking_places(conn: psycopg.Connection[Any], sites: Sequence[Site]) -> None:
    """A site of the file is described whole: its parking place is written, or removed
    when the site no longer has one."""
    with conn.cursor() as cur:
        rows = [(s.id, *s.parking.model_dump().values()) for s in sites if s.parking]
        if rows:
            cur.executemany(_UPSERT_PARKING, rows)
        gone = [s.id for s in sites if s.parking is None]
        if gone:
            cur.execute("DELETE FROM parking_places WHERE site_id = ANY(%s)", (gone,))


def parking_places(conn: psycopg.Connection[Any]) -> dict[str, ParkingPlace]:
    """The parking place of each site that has one, by site id."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(f"SELECT {', '.join(PARKING_COLS)} FROM parking_places "
                           "ORDER BY site_id").fetchall()
    return {r.pop("site_id"): ParkingPlace.model_validate(r) for r in rows}


def _site_params(s: Site) -> tuple[Any, ...]:
    return (s.id, s.kind.value, s.name, s.insee, s.latitude, s.longitude, s.capacity,
            Jsonb(s.metadata))


def _device_params(d: Device) -> tuple[Any, ...]:
    return (d.id, d.family.value, d.site_id, d.name, d.latitude, d.longitude, d.dev_eui,
            d.meter_id, d.meter_serial, d.report_interval_s, d.installed_at, d.active,
            Jsonb(d.metadata))


def _check_against_db(conn: psycopg.Connection[Any], reg: RegistryFile) -> list[RowError]:
    file_sites = {s.id: s for s in reg.sites}
    file_devices = {d.id for d in reg.devices}
    wanted = sorted({d.site_id for d in reg.devices} - set(file_sites))
    rows = conn.execute("SELECT id, kind FROM sites WHERE id = ANY(%s)", (wanted,)).fetchall()
    known = {sid: SiteKind(kind) for sid, kind in rows}
    where = "database check"
    errors = cross_check([(where, s) for s in reg.sites], [(where, d) for d in reg.devices],
                         known_sites=known)
    # Unique identifiers held by other devices of the database.
    for col, label in (("dev_eui", "DevEUI"), ("meter_id", "PRM"),
                       ("meter_serial", "meter serial")):
        mine = {getattr(d, col): d.id for d in reg.devices if getattr(d, col) is not None}
        if not mine:
            continue
        held = conn.execute(f"SELECT {col}, id FROM devices WHERE {col} = ANY(%s)",
                            (list(mine),)).fetchall()
        errors.extend(
            RowError(where, mine[value],
                     f"{label} {value} already belongs to device {owner!r} in the database")
            for value, owner in held if owner != mine[value])
    # Devices left on a site whose kind the file changes.
    stay = conn.execute(
        "SELECT id, family, site_id FROM devices WHERE site_id = ANY(%s) AND id <> ALL(%s)",
        (list(file_sites), list(file_devices))).fetchall()
    for dev_id, family, site_id in stay:
        site = file_sites[site_id]
        expected = SITE_KIND_OF_FAMILY[Family(family)]
        if site.kind is not expected:
            errors.append(RowError(
                where, site_id, f"kind {site.kind.value} does not suit device "
                f"{dev_id!r} ({family}) that the database has on this site"))
    return errors


# -- reading ------------------------------------------------------------------------------

def _device_from_row(row: dict[str, Any]) -> Device:
    # Rows passed the CHECK constraints already; don't re-validate on every read.
    installed = row["installed_at"]
    return Device.model_construct(**{
        **row, "family": Family(row["family"]),
        "installed_at": installed.astimezone(UTC) if installed is not None else None,
    })


def _site_from_row(row: dict[str, Any]) -> Site:
    return Site.model_construct(**{**row, "kind": SiteKind(row["kind"])})


def list_devices(conn: psycopg.Connection[Any], family: Family | str | None = None,
                 site: str | None = None) -> list[Device]:
    """Devices, by id, optionally of one family and/or on one site."""
    query = f"SELECT {', '.join(_DEVICE_COLS)} FROM devices WHERE true"
    params: list[Any] = []
    if family is not None:
        query += " AND family = %s"
        params.append(Family(family).value)
    if site is not None:
        query += " AND site_id = %s"
        params.append(site)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query + " ORDER BY id", params).fetchall()
    return [_device_from_row(r) for r in rows]


def get_device(conn: psycopg.Connection[Any], device_id: str) -> Device | None:
    """One device, or None."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(f"SELECT {', '.join(_DEVICE_COLS)} FROM devices WHERE id = %s",
                          (device_id,)).fetchone()
    return None if row is None else _device_from_row(row)


def list_sites(conn: psycopg.Connection[Any]) -> list[Site]:
    """Every site, by id, with its parking place where it has one (so that a listing
    imported back keeps it)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(f"SELECT {', '.join(_SITE_COLS)} FROM sites ORDER BY id").fetchall()
    places = parking_places(conn)
    return [_site_from_row({**r, "parking": places.get(r["id"])}) for r in rows]


def device_counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Number of devices per site id."""
    rows = conn.execute("SELECT site_id, count(*) FROM devices GROUP BY site_id").fetchall()
    return dict(rows)


def last_message_at(conn: psycopg.Connection[Any], device: Device) -> datetime | None:
    """Time of the device's latest reading in the tables of its family, if any."""
    latest: datetime | None = None
    for kind in KINDS_OF_FAMILY[device.family]:
        row = conn.execute(f"SELECT max(time) FROM {kind.table} WHERE device_id = %s",
                           (device.id,)).fetchone()
        if row is not None and row[0] is not None and (latest is None or row[0] > latest):
            latest = row[0]
    return None if latest is None else latest.astimezone(UTC)


__all__ = [
    "ImportResult",
    "device_counts",
    "get_device",
    "import_registry",
    "last_message_at",
    "list_devices",
    "list_sites",
    "parking_places",
]
