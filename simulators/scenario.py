"""Scenario files: what to simulate, when, how fast, with which events and faults.

A scenario is a YAML (or JSON) document validated by :class:`Scenario`; see
``docs/simulators.md`` for the format with an example per feature. Named scenarios ship in
``simulators/scenarios/<name>.yaml``. Times are local (``timezone``, Europe/Paris by default);
``start`` may be absolute (``2025-11-18 07:00``) or relative to the moment the scenario is
resolved (``yesterday 00:00``, ``last saturday 07:00``, ``today 06:00``, ``now``), so that
shipped scenarios always produce data inside the ingestor's retention window.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from devices.families import Family

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
"""Where the named scenarios ship."""

_CONFIG = ConfigDict(extra="forbid", frozen=True)
_DURATION_RE = re.compile(
    r"^\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*(?:(\d+)\s*s)?\s*$")
_HHMM_RE = re.compile(r"^([01]?\d|2[0-4]):([0-5]\d)$")
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_ABBR = {d[:3]: i for i, d in enumerate(_WEEKDAYS)}

Format = Literal["native", "senml", "chirpstack", "tic"]
TsStyle = Literal["iso_utc", "iso_local", "unix"]


def _default_ts_styles() -> dict[TsStyle, float]:
    return {"iso_utc": 0.8, "iso_local": 0.1, "unix": 0.1}
FORMATS_OF_FAMILY: dict[Family, frozenset[str]] = {
    Family.WIFI_AP: frozenset({"native", "senml"}),
    Family.PARKING_SPOT: frozenset({"native", "senml", "chirpstack"}),
    Family.PARKING_METER: frozenset({"native", "senml"}),
    Family.GRID_METER: frozenset({"native", "senml", "tic"}),
}
"""Formats each family can publish in (wifi sessions are always native: no MAC in SenML)."""


class ScenarioError(ValueError):
    """A scenario cannot be found, read or validated; the message says why."""


def parse_duration(value: str | int | float) -> int:
    """Seconds of ``90``, ``"90s"``, ``"15m"``, ``"2h"``, ``"1d"`` or ``"1h30m"``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = int(value)
    else:
        m = _DURATION_RE.match(str(value))
        if m is None or not any(m.groups()):
            raise ValueError(f"duration {value!r} is not like 90s, 15m, 2h, 1d or 1h30m")
        d, h, mi, s = (int(g) if g else 0 for g in m.groups())
        seconds = ((d * 24 + h) * 60 + mi) * 60 + s
    if seconds <= 0:
        raise ValueError("duration must be positive")
    return seconds


def parse_hhmm(value: str) -> int:
    """Seconds after local midnight of ``"HH:MM"`` (``"24:00"`` is the end of the day)."""
    m = _HHMM_RE.match(value.strip())
    if m is None or (int(m.group(1)) == 24 and m.group(2) != "00"):
        raise ValueError(f"time {value!r} is not HH:MM")
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60


def resolve_start(spec: str, *, now: datetime, tz: ZoneInfo) -> datetime:
    """The aware start instant of a ``start`` spec, relative specs resolved against ``now``.

    Accepted: ``now``; ``2025-11-18 07:00`` / ``2025-11-18T07:00`` (local, or with an
    offset); ``today|yesterday [HH:MM]``; ``last <weekday> [HH:MM]`` (the latest such day
    strictly before today). A time without ``HH:MM`` is midnight.
    """
    text = spec.strip().lower()
    if text == "now":
        return now.astimezone(tz).replace(microsecond=0)
    words = text.split()
    clock = 0
    if words and _HHMM_RE.match(words[-1]) and not re.match(r"^\d{4}-", words[0]):
        clock = parse_hhmm(words.pop())
    today = now.astimezone(tz).date()
    day: date | None = None
    if words == ["today"]:
        day = today
    elif words == ["yesterday"]:
        day = today - timedelta(days=1)
    elif len(words) == 2 and words[0] == "last" and words[1] in _WEEKDAYS:
        back = (today.weekday() - _WEEKDAYS.index(words[1])) % 7 or 7
        day = today - timedelta(days=back)
    if day is not None:
        local = datetime.combine(day, time(0), tzinfo=tz) + timedelta(seconds=clock)
        # Through UTC, so that a clock time in a DST change lands on a real instant.
        return local.astimezone(UTC).astimezone(tz)
    try:
        parsed = datetime.fromisoformat(spec.strip())
    except ValueError:
        raise ValueError(
            f"start {spec!r} is not 'now', 'today|yesterday [HH:MM]', "
            "'last <weekday> [HH:MM]' or an ISO date-time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    # Through UTC: astimezone to the same zone would keep a clock time that does not exist.
    return parsed.astimezone(UTC).astimezone(tz)


Share = Annotated[float, Field(ge=0.0, le=1.0)]


class CitySpec(BaseModel):
    """Which devices to simulate: the demo city, the database registry, or a registry file."""

    model_config = _CONFIG

    source: str = Field("demo", description="'demo', 'registry', or a .json/.csv file path.")
    families: tuple[Family, ...] = tuple(Family)
    max_per_site: dict[Family, int] = Field(
        default_factory=dict, description="Keep at most N devices of a family per site.")


class WifiSpec(BaseModel):
    """Pedestrian squares and their access points."""

    model_config = _CONFIG

    peak_visitors_per_ap_hour: float = Field(60.0, ge=0, description="At the busiest hour.")
    visitors_per_hour: dict[str, float] = Field(
        default_factory=dict, description="Peak visitors per hour of given squares (overrides).")
    dwell_median_s: float = Field(900.0, gt=0)
    dwell_sigma: float = Field(0.9, gt=0, le=3)
    randomized_mac_share: Share = 0.4
    regulars: int = Field(300, ge=0, description="Stable MACs of people who come back.")
    regular_share: Share = 0.3
    roam_share: Share = Field(0.1, description="Sessions that move to another AP of the square.")
    outage_per_ap_day: float = Field(0.05, ge=0, description="Radio outages per AP per day.")
    outage_minutes: tuple[float, float] = (5.0, 30.0)
    bytes_per_client_s: float = Field(2500.0, ge=0)


class ParkingSpec(BaseModel):
    """Parking zones: spot sensors and meters."""

    model_config = _CONFIG

    arrivals_per_spot_hour: float = Field(0.6, ge=0, description="At the busiest hour.")
    duration_median_s: float = Field(3000.0, gt=0)
    duration_sigma: float = Field(0.9, gt=0, le=3)
    evening_duration_median_s: float = Field(36000.0, gt=0, description="Arrivals after 18:00.")
    night_occupancy: Share = 0.35
    detection_delay_s: tuple[int, int] = (3, 40)
    paid_hours: tuple[tuple[str, str], ...] = (("09:00", "12:00"), ("14:00", "19:00"))
    paid_days: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat")
    tariff_cents_per_hour: dict[str, int] = Field(
        default_factory=lambda: {"rouge": 200, "verte": 120, "": 150},
        description="By the zone's metadata tariff_zone; '' is the default.")
    max_paid_hours: float = Field(2.0, gt=0)
    pay_share: Share = 0.8
    mobile_share: Share = Field(0.15, description="Payments made with a phone at the meter.")
    stuck_share: Share = 0.01
    silent_share: Share = 0.01
    fault_per_meter_day: float = Field(0.2, ge=0)

    @field_validator("paid_days")
    @classmethod
    def _days(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [d for d in value if d[:3].lower() not in _DAY_ABBR]
        if bad:
            raise ValueError(f"unknown day(s) {bad}: use mon, tue, ... sun")
        return tuple(d[:3].lower() for d in value)

    @field_validator("paid_hours")
    @classmethod
    def _hours(cls, value: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        for a, b in value:
            if parse_hhmm(a) >= parse_hhmm(b):
                raise ValueError(f"paid period {a}-{b} ends before it starts")
        return value


class GridSpec(BaseModel):
    """Districts and their electricity meters."""

    model_config = _CONFIG

    temperature_mean_c: float = 9.0
    temperature_amplitude_c: float = Field(4.0, ge=0)
    electric_heating_share: Share = 0.3
    solar_kwc: tuple[float, float] = (2.0, 6.0)
    replacements: int = Field(1, ge=0, description="Meters replaced (index restarts at 0).")
    gap_share: Share = Field(0.02, description="Meters with a communication gap.")
    gap_minutes: tuple[float, float] = (30.0, 180.0)
    sag_swell_per_district_hour: float = Field(0.05, ge=0)
    publish_delay_s: tuple[int, int] = Field(
        (1, 90), description="Readings are timed on 10-min marks, published a bit later.")


class EventSpec(BaseModel):
    """Something that happens during the scenario, on local day ``day`` (0 = start's date)."""

    model_config = _CONFIG

    type: Literal["market", "concert", "heat_wave", "silent_fleet", "broker_outage"]
    site: str | None = Field(None, description="Square (market, concert) or any site.")
    family: Family | None = Field(None, description="silent_fleet: only this family.")
    day: int = Field(0, ge=0)
    every_day: bool = False
    start: str = "00:00"
    end: str = "24:00"
    factor: float = Field(3.0, gt=0, description="market/concert: footfall multiplier.")
    delta_c: float = Field(10.0, description="heat_wave: degrees added.")
    share: Share = Field(1.0, description="silent_fleet: share of the devices that go silent.")

    @model_validator(mode="after")
    def _check(self) -> EventSpec:
        if parse_hhmm(self.start) >= parse_hhmm(self.end):
            raise ValueError(f"event {self.type} ends ({self.end}) before it starts ({self.start})")
        if self.type in ("market", "concert") and self.site is None:
            raise ValueError(f"a {self.type} needs a site (a square)")
        return self


class FaultSpec(BaseModel):
    """Fault injection: ratios of extra bad messages to clean ones, and clock skew."""

    model_config = _CONFIG

    malformed: Share = 0.0
    duplicates: Share = 0.0
    out_of_order: Share = 0.0
    unknown_devices: Share = 0.0
    oversized: Share = 0.0
    clock_skew: Share = Field(0.0, description="Share of devices whose clock is off.")
    clock_skew_s: tuple[int, int] = Field((10, 240), description="|skew| range, seconds.")
    out_of_order_delay_s: tuple[int, int] = (30, 600)
    oversized_bytes: int = Field(70_000, ge=1, description="Above the ingestor's 64 KiB limit.")


class Scenario(BaseModel):
    """A scenario file."""

    model_config = _CONFIG

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    description: str = ""
    city: CitySpec = CitySpec()
    start: str = "yesterday 00:00"
    duration: int = Field(86400, description="90s, 15m, 2h, 1d or seconds.")
    timezone: str = "Europe/Paris"
    speed: float | Literal["max"] = Field(
        600.0, description="1 = real time, N = N times faster, 'max' = as fast as possible.")
    seed: int = 1
    qos: Literal[0, 1] = 1
    formats: dict[Family, dict[Format, float]] = Field(default_factory=dict)
    timestamps: dict[TsStyle, float] = Field(
        default_factory=lambda: _default_ts_styles(),
        description="How native payloads write ts (share of devices).")
    wifi: WifiSpec = WifiSpec()
    parking: ParkingSpec = ParkingSpec()
    grid: GridSpec = GridSpec()
    events: tuple[EventSpec, ...] = ()
    faults: FaultSpec = FaultSpec()

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> int:
        return parse_duration(value)

    @field_validator("speed", mode="before")
    @classmethod
    def _speed(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in ("max", "fast", "asap"):
            return "max"
        if isinstance(value, str) and value.strip().lower().startswith("x"):
            return float(value.strip()[1:])
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("formats")
    @classmethod
    def _formats(cls, value: dict[Family, dict[str, float]]) -> dict[Family, dict[str, float]]:
        for family, weights in value.items():
            bad = set(weights) - FORMATS_OF_FAMILY[family]
            if bad:
                raise ValueError(f"{family.value} cannot publish {sorted(bad)}; it can publish "
                                 f"{sorted(FORMATS_OF_FAMILY[family])}")
            if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
                raise ValueError(f"format weights of {family.value} must be >= 0, not all 0")
        return value

    @model_validator(mode="after")
    def _check_start(self) -> Scenario:
        resolve_start(self.start, now=datetime.now(UTC), tz=ZoneInfo(self.timezone))
        if isinstance(self.speed, float) and self.speed <= 0:
            raise ValueError("speed must be positive (or 'max')")
        return self

    @property
    def tz(self) -> ZoneInfo:
        """The scenario's time zone."""
        return ZoneInfo(self.timezone)

    def resolve(self, *, now: datetime | None = None, start: str | None = None) -> ResolvedWindow:
        """The concrete time window (relative starts resolved against ``now``)."""
        tz = self.tz
        begin = resolve_start(start or self.start, now=now or datetime.now(UTC), tz=tz)
        return ResolvedWindow(begin, self.duration, tz)


def add_elapsed(when: datetime, seconds: float) -> datetime:
    """``when`` plus ``seconds`` of elapsed time, in ``when``'s time zone.

    Python adds a timedelta to an aware datetime on the wall clock (same tzinfo, offset
    recomputed afterwards), which is an hour off across a DST change; through UTC it is not.
    """
    tz = when.tzinfo
    return (when.astimezone(UTC) + timedelta(seconds=seconds)).astimezone(tz)


@dataclass(frozen=True)
class ResolvedWindow:
    """A scenario's concrete window: an aware local start, a duration, the time zone.

    The duration is elapsed time: ``24h`` from local midnight ends at 01:00 the next day
    after the spring change and at 23:00 the same day after the autumn one.
    """

    start: datetime
    duration_s: int
    tz: ZoneInfo

    @property
    def start_unix(self) -> int:
        """The start as whole Unix seconds."""
        return int(self.start.timestamp())

    @property
    def end_unix(self) -> int:
        """The end as whole Unix seconds (exclusive)."""
        return self.start_unix + self.duration_s

    @property
    def end(self) -> datetime:
        """The end instant (exclusive), local: ``duration_s`` seconds after the start."""
        return add_elapsed(self.start.astimezone(self.tz), self.duration_s)

    def at(self, offset_s: float) -> datetime:
        """The local instant ``offset_s`` seconds after the start."""
        return add_elapsed(self.start.astimezone(self.tz), offset_s)


def paid_periods(spec: ParkingSpec) -> tuple[tuple[int, int], ...]:
    """Paid periods as (start, end) seconds after local midnight."""
    return tuple((parse_hhmm(a), parse_hhmm(b)) for a, b in spec.paid_hours)


def paid_weekdays(spec: ParkingSpec) -> frozenset[int]:
    """Paid days as ``date.weekday()`` numbers."""
    return frozenset(_DAY_ABBR[d] for d in spec.paid_days)


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario file (.yaml, .yml or .json)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ScenarioError(f"scenario {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ScenarioError(f"scenario {path} must be a mapping of fields")
    data.setdefault("name", path.stem)
    if isinstance(data.get("city"), str):
        data["city"] = {"source": data["city"]}
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False):
            loc = ".".join(str(p) for p in err["loc"])
            lines.append(f"  - {loc}: {err['msg'].removeprefix('Value error, ')}")
        raise ScenarioError(f"scenario {path} is invalid:\n" + "\n".join(lines)) from None


def named_scenarios() -> dict[str, Path]:
    """The scenarios shipped in the repository, by name."""
    if not SCENARIO_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(SCENARIO_DIR.glob("*.yaml"))}


def find_scenario(name_or_path: str) -> Scenario:
    """A named scenario, or a scenario file given by its path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml", ".json") and path.exists():
        return load_scenario(path)
    named = named_scenarios()
    if name_or_path in named:
        return load_scenario(named[name_or_path])
    raise ScenarioError(f"no scenario {name_or_path!r}: give a file path or one of "
                        f"{', '.join(named) or '(none shipped)'}")


__all__ = [
    "FORMATS_OF_FAMILY",
    "SCENARIO_DIR",
    "CitySpec",
    "EventSpec",
    "FaultSpec",
    "GridSpec",
    "ParkingSpec",
    "ResolvedWindow",
    "Scenario",
    "ScenarioError",
    "WifiSpec",
    "add_elapsed",
    "find_scenario",
    "load_scenario",
    "named_scenarios",
    "paid_periods",
    "paid_weekdays",
    "parse_duration",
    "parse_hhmm",
    "resolve_start",
]
