"""The device registry: sites and devices, and the JSON/CSV files that describe them.

The models mirror the CHECK constraints of ``sql/001_registry.sql``, so that
a file that validates here never fails a constraint on import. A Linky has two numbers: ``meter_id``
is its delivery point's PRM (14 digits, kept when the meter is replaced) and
``meter_serial`` the meter's own serial (12 digits, ``ADSC``/``ADCO`` in its TIC frames,
which are matched on it). ``installed_at`` must carry a time zone (it is stored in UTC).

File formats (see ``docs/registry.md``):

* JSON: ``{"sites": [...], "devices": [...]}``, one object per record, fields as below.
* CSV: one row per record with a header. A ``record`` column says ``site`` or ``device``;
  without it every row is a device. Empty cells mean "not given"; ``metadata`` and
  ``parking`` hold a JSON object.

Loading validates every row and cross-checks the file (duplicate ids, DevEUIs, PRMs and
meter serials; each device's site exists and its kind suits the device's family), then raises one
:class:`RegistryFileError` listing every problem found.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from devices.families import DEVICE_ID_RE, Family, reserved_device_id

SITE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
INSEE_RE = re.compile(r"^([0-9]{5}|2[AB][0-9]{3})$")
#: The national parking id (schema-stationnement): ``<INSEE>-P-<3 digits>``.
PARKING_ID_RE = re.compile(r"^([013-9][0-9]|2[AB1-9])[0-9]{3}-P-[0-9]{3}$")
SIRET_RE = re.compile(r"^[0-9]{14}$")
DEV_EUI_RE = re.compile(r"^[0-9a-f]{16}$")
PRM_RE = re.compile(r"^[0-9]{14}$")
METER_SERIAL_RE = re.compile(r"^[0-9]{12}$")
_EUI_SEPARATORS = re.compile(r"[\s:-]")
_PG_INT_MAX = 2**31 - 1  # SQL ``integer``
MAX_REPORT_INTERVAL_S = 7 * 24 * 3600  # SQL CHECK: one week

DEFAULT_REPORT_INTERVAL_S: dict[Family, int] = {
    Family.WIFI_AP: 60,  # counters every minute
    Family.PARKING_SPOT: 600,  # heartbeat; state changes come in between
    Family.PARKING_METER: 900,  # status report every 15 minutes
    Family.GRID_METER: 600,  # 10-minute load-curve step
}


class SiteKind(StrEnum):
    """Kinds of site the city equips."""

    SQUARE = "square"
    PARKING_ZONE = "parking_zone"
    DISTRICT = "district"


SITE_KIND_OF_FAMILY: dict[Family, SiteKind] = {
    Family.WIFI_AP: SiteKind.SQUARE,
    Family.PARKING_SPOT: SiteKind.PARKING_ZONE,
    Family.PARKING_METER: SiteKind.PARKING_ZONE,
    Family.GRID_METER: SiteKind.DISTRICT,
}

_MODEL_CONFIG = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True,
                           allow_inf_nan=False)
Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]
Euros = Annotated[float, Field(ge=0, le=100_000)]
Spots = Annotated[int, Field(ge=0, le=_PG_INT_MAX)]


class ParkingPlace(BaseModel):
    """What the national parking-places schema (etalab/schema-stationnement) needs of a
    parking zone beyond the site's own fields (name, INSEE code, coordinates, capacity).

    Mirrors the CHECKs of ``sql/013_opendata.sql``; the open data exports
    these values as they are (see docs/opendata.md), nothing is invented at export time.
    """

    model_config = _MODEL_CONFIG

    national_id: str
    address: str | None = Field(None, min_length=1, max_length=300)
    url: str | None = Field(None, min_length=1, max_length=500, pattern=r"^https?://\S+$")
    users: Literal["all", "subscribers"]
    free: bool
    pmr_spots: Spots
    ev_spots: Spots | None = None
    max_height_cm: int | None = Field(None, ge=1, le=10_000)
    operator_siret: str
    pmr_tariff: Literal["free", "normal", "special"] | None = None
    tariff_1h_eur: Euros | None = None
    tariff_2h_eur: Euros | None = None
    tariff_3h_eur: Euros | None = None
    tariff_4h_eur: Euros | None = None
    tariff_24h_eur: Euros | None = None
    resident_subscription_eur: Euros | None = None
    non_resident_subscription_eur: Euros | None = None
    structure: Literal["surface", "building"] | None = None
    info: str | None = Field(None, min_length=1, max_length=1000)

    @field_validator("national_id")
    @classmethod
    def _check_national_id(cls, value: str) -> str:
        if not PARKING_ID_RE.match(value):
            raise ValueError("a national parking id is <INSEE code>-P-<3 digits>, e.g. "
                             "62041-P-001")
        return value

    @field_validator("operator_siret")
    @classmethod
    def _check_siret(cls, value: str) -> str:
        if not SIRET_RE.match(value):
            raise ValueError("a SIRET number is 14 digits (write it in quotes)")
        return value


class Site(BaseModel):
    """A place the city equips: a pedestrian square, a parking zone or a district."""

    model_config = _MODEL_CONFIG

    id: str
    kind: SiteKind
    name: str = Field(min_length=1, max_length=200)
    insee: str
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    capacity: int | None = Field(None, ge=0, le=_PG_INT_MAX)
    metadata: dict[str, Any] = Field(default_factory=dict)
    parking: ParkingPlace | None = None

    @model_validator(mode="after")
    def _check_parking(self) -> Site:
        if self.parking is None:
            return self
        if self.kind is not SiteKind.PARKING_ZONE:
            raise ValueError("parking: only a parking_zone site describes a parking place")
        missing = [n for n in ("latitude", "longitude", "capacity") if getattr(self, n) is None]
        if missing:
            raise ValueError(f"parking: the national schema needs the site's "
                             f"{', '.join(missing)}")
        if self.capacity is not None and self.parking.pmr_spots > self.capacity:
            raise ValueError("parking: pmr_spots is more than the capacity")
        if not self.parking.national_id.startswith(self.insee):
            raise ValueError("parking: national_id must start with the site's INSEE code")
        return self

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not SITE_ID_RE.match(value):
            raise ValueError("a site id is 1-64 characters among a-z 0-9 _ -, starting with "
                             "a letter or digit")
        return value

    @field_validator("insee")
    @classmethod
    def _check_insee(cls, value: str) -> str:
        if not INSEE_RE.match(value):
            raise ValueError("an INSEE code is 5 digits (2A/2B + 3 digits in Corsica)")
        return value


class Device(BaseModel):
    """A connected piece of equipment; its id is also its MQTT user name and topic segment."""

    model_config = _MODEL_CONFIG

    id: str
    family: Family
    site_id: str
    name: str = Field(min_length=1, max_length=200)
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    dev_eui: str | None = None
    meter_id: str | None = None
    meter_serial: str | None = None
    report_interval_s: int = Field(ge=1, le=MAX_REPORT_INTERVAL_S)
    installed_at: AwareDatetime | None = None
    active: bool = True
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _default_interval(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("report_interval_s") in (None, ""):
            try:
                default = DEFAULT_REPORT_INTERVAL_S[Family(str(data.get("family")))]
            except ValueError:
                # The family error is reported; don't add a "missing interval" one to it.
                default = 60
            data = {**data, "report_interval_s": default}
        return data

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not DEVICE_ID_RE.match(value):
            raise ValueError("a device id is 1-64 characters among A-Z a-z 0-9 _ . -, "
                             "starting with a letter or digit")
        if reserved_device_id(value):
            raise ValueError("a device id may not start with 'beffroi-' nor be 'chirpstack' or "
                             "'teleinfo': it is the device's broker user name, and those are "
                             "Beffroi's and the bridges' accounts")
        return value

    @field_validator("dev_eui", mode="before")
    @classmethod
    def _normalise_dev_eui(cls, value: Any) -> Any:
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise ValueError("a DevEUI is a string of 16 hexadecimal digits")
        eui = _EUI_SEPARATORS.sub("", value).lower()
        if not DEV_EUI_RE.match(eui):
            raise ValueError(f"a DevEUI is 16 hexadecimal digits, got {value!r}")
        return eui

    @field_validator("meter_id", mode="before")
    @classmethod
    def _check_meter_id(cls, value: Any) -> Any:
        meter = _digits(value, "a PRM")
        if meter is None or PRM_RE.match(meter):
            return meter
        if METER_SERIAL_RE.match(meter):
            raise ValueError(f"{value!r} has 12 digits: a meter's serial (ADSC/ADCO), to give "
                             "as meter_serial; meter_id is the 14-digit PRM")
        raise ValueError(f"a PRM is 14 digits, got {value!r}")

    @field_validator("meter_serial", mode="before")
    @classmethod
    def _check_meter_serial(cls, value: Any) -> Any:
        serial = _digits(value, "a meter serial")
        if serial is not None and not METER_SERIAL_RE.match(serial):
            raise ValueError(f"a meter serial (ADSC/ADCO) is 12 digits, got {value!r}")
        return serial

    @field_validator("installed_at")
    @classmethod
    def _to_utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else value.astimezone(UTC)


def _digits(value: Any, what: str) -> str | None:
    """A Linky number without its spaces, None when not given."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        # A JSON number would lose leading zeros.
        raise ValueError(f"{what} is a string of digits (write it in quotes)")
    return re.sub(r"\s", "", value)


@dataclass(frozen=True)
class RowError:
    """One problem in a registry file: where it is, which record, what is wrong."""

    where: str
    record_id: str | None
    reason: str

    def __str__(self) -> str:
        ident = f" ({self.record_id})" if self.record_id else ""
        return f"{self.where}{ident}: {self.reason}"


class RegistryFileError(ValueError):
    """A registry file (or its import) has problems; ``errors`` lists every one of them."""

    def __init__(self, source: str, errors: list[RowError]) -> None:
        self.source = source
        self.errors = errors
        lines = "\n".join(f"  - {e}" for e in errors)
        super().__init__(f"{source}: {len(errors)} problem(s), nothing imported:\n{lines}")


@dataclass(frozen=True)
class RegistryFile:
    """The valid content of a registry file."""

    sites: list[Site] = field(default_factory=list)
    devices: list[Device] = field(default_factory=list)


Record = Literal["site", "device"]

SITE_FIELDS = tuple(Site.model_fields)
DEVICE_FIELDS = tuple(Device.model_fields)
CSV_COLUMNS = ("record", *dict.fromkeys((*SITE_FIELDS, *DEVICE_FIELDS)))


@dataclass
class _RawRow:
    where: str
    record: Record
    data: dict[str, Any]
    errors: list[str] = field(default_factory=list)


# -- loading ------------------------------------------------------------------------------

def load_registry_file(path: Path | str, *,
                       known_sites: Mapping[str, SiteKind] | None = None) -> RegistryFile:
    """Read and validate a ``.json`` or ``.csv`` registry file.

    ``known_sites`` (site id -> kind, e.g. from the database) lets devices refer to sites
    that the file does not define; when it is None such references are left for the
    import to check.
    """
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryFileError(source, [RowError("file", None, f"cannot read: {exc}")]) from exc
    suffix = path.suffix.lower()
    if suffix == ".json":
        rows = _rows_from_json(text, source)
    elif suffix == ".csv":
        rows = _rows_from_csv(text, source)
    else:
        raise RegistryFileError(source, [RowError(
            "file", None, f"unsupported file type {suffix or '(none)'!r}: use .json or .csv")])
    return _validate_rows(rows, source=source, known_sites=known_sites)


def parse_registry(obj: Any, *, source: str = "registry",
                   known_sites: Mapping[str, SiteKind] | None = None) -> RegistryFile:
    """Validate an already parsed JSON document ``{"sites": [...], "devices": [...]}``."""
    return _validate_rows(_rows_from_obj(obj, source), source=source, known_sites=known_sites)


def _rows_from_json(text: str, source: str) -> list[_RawRow]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RegistryFileError(source, [RowError(
            f"line {exc.lineno}", None, f"not valid JSON: {exc.msg}")]) from exc
    return _rows_from_obj(obj, source)


def _rows_from_obj(obj: Any, source: str) -> list[_RawRow]:
    if not isinstance(obj, dict):
        raise RegistryFileError(source, [RowError(
            "file", None, 'expected an object {"sites": [...], "devices": [...]}')])
    problems = [RowError("file", None, f"unknown key {k!r} (expected sites, devices)")
                for k in obj if k not in ("sites", "devices")]
    rows: list[_RawRow] = []
    sections: tuple[tuple[str, Record], ...] = (("sites", "site"), ("devices", "device"))
    for key, record in sections:
        items = obj.get(key, [])
        if not isinstance(items, list):
            problems.append(RowError(key, None, "expected a list of objects"))
            continue
        for i, item in enumerate(items):
            row = _RawRow(f"{key}[{i}]", record, {})
            if isinstance(item, dict):
                row.data = item
            else:
                row.errors.append("expected an object")
            rows.append(row)
    if problems:
        raise RegistryFileError(source, problems)
    return rows


def _rows_from_csv(text: str, source: str) -> list[_RawRow]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in reader.fieldnames or []]
    problems = [RowError("line 1", None, f"unknown column {h!r}")
                for h in header if h not in CSV_COLUMNS]
    if "id" not in header:
        problems.append(RowError("line 1", None, "the header has no 'id' column"))
    if len(set(header)) != len(header):
        problems.append(RowError("line 1", None, "a column appears twice in the header"))
    if problems:
        raise RegistryFileError(source, problems)
    reader.fieldnames = header
    rows: list[_RawRow] = []
    for raw in reader:
        where = f"line {reader.line_num}"
        errors: list[str] = []
        if None in raw:
            errors.append("more cells than header columns")
        cells = {k: v.strip() for k, v in raw.items()
                 if isinstance(k, str) and isinstance(v, str) and v.strip() != ""}
        if not cells and not errors:
            continue  # blank line
        given = cells.pop("record", "device").lower()
        kind: Record = "site" if given == "site" else "device"
        if given not in ("site", "device"):
            errors.append(f"record: expected 'site' or 'device', got {given!r}")
        allowed = SITE_FIELDS if kind == "site" else DEVICE_FIELDS
        errors.extend(f"{k}: column does not apply to a {kind}" for k in cells
                      if k not in allowed)
        data: dict[str, Any] = {k: v for k, v in cells.items() if k in allowed}
        for key in ("metadata", "parking"):
            if key in data:
                try:
                    data[key] = json.loads(data[key])
                except json.JSONDecodeError as exc:
                    errors.append(f"{key}: not valid JSON ({exc.msg})")
                    del data[key]
        rows.append(_RawRow(where, kind, data, errors))
    return rows


# -- validation ---------------------------------------------------------------------------

def _format_validation_error(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        out.append(f"{loc}: {msg}" if loc else msg)
    return out


def _validate_rows(rows: Iterable[_RawRow], *, source: str,
                  known_sites: Mapping[str, SiteKind] | None = None) -> RegistryFile:
    """Validate each row into a model, cross-check them, raise if anything is wrong."""
    errors: list[RowError] = []
    sites: list[tuple[str, Site]] = []
    devices: list[tuple[str, Device]] = []
    for row in rows:
        raw_id = row.data.get("id")
        rid = raw_id if isinstance(raw_id, str) and raw_id else None
        reasons = list(row.errors)
        model: Site | Device | None = None
        if not reasons:
            try:
                model = (Site.model_validate(row.data) if row.record == "site"
                         else Device.model_validate(row.data))
            except ValidationError as exc:
                reasons.extend(_format_validation_error(exc))
        errors.extend(RowError(row.where, rid, r) for r in reasons)
        if isinstance(model, Site):
            sites.append((row.where, model))
        elif isinstance(model, Device):
            devices.append((row.where, model))
    errors.extend(cross_check(sites, devices, known_sites=known_sites))
    if errors:
        raise RegistryFileError(source, errors)
    return RegistryFile([s for _, s in sites], [d for _, d in devices])


def cross_check(sites: list[tuple[str, Site]], devices: list[tuple[str, Device]], *,
                known_sites: Mapping[str, SiteKind] | None = None) -> list[RowError]:
    """Problems between records: duplicates, unknown sites, family/site kind mismatches.

    Each record comes with where it was read. A device whose site is neither in ``sites``
    nor in ``known_sites`` is an error only when ``known_sites`` is given.
    """
    errors: list[RowError] = []
    site_kind: dict[str, SiteKind] = dict(known_sites or {})
    first_site: dict[str, str] = {}
    for where, site in sites:
        if site.id in first_site:
            errors.append(RowError(where, site.id,
                                   f"duplicate site id (first at {first_site[site.id]})"))
            continue
        first_site[site.id] = where
        site_kind[site.id] = site.kind
    seen: dict[str, dict[str, str]] = {"device id": {}, "DevEUI": {}, "PRM": {},
                                       "meter serial": {}}
    for where, dev in devices:
        for label, value in (("device id", dev.id), ("DevEUI", dev.dev_eui),
                             ("PRM", dev.meter_id), ("meter serial", dev.meter_serial)):
            if value is None:
                continue
            if value in seen[label]:
                errors.append(RowError(where, dev.id, f"duplicate {label} {value} "
                                       f"(first at {seen[label][value]})"))
            else:
                seen[label][value] = where
        kind = site_kind.get(dev.site_id)
        if kind is None:
            if known_sites is not None:
                errors.append(RowError(where, dev.id, f"site_id: unknown site {dev.site_id!r}"))
            continue
        expected = SITE_KIND_OF_FAMILY[dev.family]
        if kind is not expected:
            errors.append(RowError(
                where, dev.id, f"family {dev.family.value} belongs on a {expected.value} site, "
                f"but site {dev.site_id!r} is a {kind.value}"))
    return errors


__all__ = [
    "DEFAULT_REPORT_INTERVAL_S",
    "SITE_KIND_OF_FAMILY",
    "Device",
    "ParkingPlace",
    "RegistryFile",
    "RegistryFileError",
    "RowError",
    "Site",
    "SiteKind",
    "cross_check",
    "load_registry_file",
    "parse_registry",
]
