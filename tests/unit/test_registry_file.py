"""Registry files: validation of every row, cross-checks, JSON and CSV layouts, the demo city."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from devices.democity import DEMO_CITY_FILE, build_demo_city, dumps
from devices.families import Family
from devices.registry import (
    RegistryFile,
    RegistryFileError,
    SiteKind,
    load_registry_file,
    parse_registry,
)

SQUARE: dict[str, Any] = {"id": "sq", "kind": "square", "name": "Place", "insee": "62041"}
ZONE: dict[str, Any] = {"id": "pz", "kind": "parking_zone", "name": "Zone", "insee": "62041",
                        "capacity": 2}
DISTRICT: dict[str, Any] = {"id": "dist", "kind": "district", "name": "Quartier", "insee": "2A004"}
AP: dict[str, Any] = {"id": "ap-1", "family": "wifi_ap", "site_id": "sq", "name": "AP 1"}


def write_json(tmp_path: Path, sites: list[dict[str, Any]],
               devices: list[dict[str, Any]]) -> Path:
    path = tmp_path / "reg.json"
    path.write_text(json.dumps({"sites": sites, "devices": devices}), encoding="utf-8")
    return path


def errors_of(sites: list[dict[str, Any]], devices: list[dict[str, Any]],
              **kw: Any) -> list[str]:
    with pytest.raises(RegistryFileError) as info:
        parse_registry({"sites": sites, "devices": devices}, **kw)
    return [str(e) for e in info.value.errors]


def test_valid_json_file_with_defaults_and_normalisation(tmp_path: Path) -> None:
    devices: list[dict[str, Any]] = [
        AP,
        {"id": "spot-1", "family": "parking_spot", "site_id": "pz", "name": "P1",
         "dev_eui": "70-B3-D5-7E-D0-00-00-0A", "installed_at": "2023-03-06T10:00:00+02:00"},
        {"id": "meter-1", "family": "parking_meter", "site_id": "pz", "name": "H1",
         "report_interval_s": 300, "active": False},
        {"id": "linky-1", "family": "grid_meter", "site_id": "dist", "name": "L1",
         "meter_id": "09 1234 5678 9012", "meter_serial": "0418 7609 7283",
         "metadata": {"phases": 3}},
    ]
    reg = load_registry_file(write_json(tmp_path, [SQUARE, ZONE, DISTRICT], devices))
    assert [s.kind for s in reg.sites] == [SiteKind.SQUARE, SiteKind.PARKING_ZONE,
                                            SiteKind.DISTRICT]
    ap, spot, meter, linky = reg.devices
    assert (ap.report_interval_s, spot.report_interval_s, meter.report_interval_s,
            linky.report_interval_s) == (60, 600, 300, 600)
    assert spot.dev_eui == "70b3d57ed000000a"
    assert spot.installed_at == datetime(2023, 3, 6, 8, 0, tzinfo=UTC)
    assert spot.installed_at is not None and spot.installed_at.utcoffset() is not None
    assert linky.meter_id == "09123456789012" and linky.meter_serial == "041876097283"
    assert linky.metadata == {"phases": 3}
    assert meter.active is False and ap.active is True
    assert ap.family is Family.WIFI_AP


@pytest.mark.parametrize(("record", "reason"), [
    ({**SQUARE, "id": "Grand Place"}, "a site id is 1-64 characters"),
    ({**SQUARE, "id": "x" * 65}, "a site id is 1-64 characters"),
    ({**SQUARE, "kind": "park"}, "kind: Input should be 'square', 'parking_zone' or 'district'"),
    ({**SQUARE, "insee": "6204"}, "insee: an INSEE code is 5 digits"),
    ({**SQUARE, "insee": 62041}, "insee: Input should be a valid string"),
    ({**SQUARE, "name": ""}, "name: String should have at least 1 character"),
    ({**SQUARE, "name": "n" * 201}, "name: String should have at most 200 characters"),
    ({**SQUARE, "latitude": 91}, "latitude: Input should be less than or equal to 90"),
    ({**SQUARE, "longitude": -181}, "longitude: Input should be greater than or equal to -180"),
    ({**ZONE, "capacity": -1}, "capacity: Input should be greater than or equal to 0"),
    ({**SQUARE, "metadata": [1]}, "metadata: Input should be a valid dictionary"),
    ({**SQUARE, "colour": "red"}, "colour: Extra inputs are not permitted"),
    ({"id": "s"}, "kind: Field required"),
])
def test_bad_site_reasons(record: dict[str, Any], reason: str) -> None:
    errs = errors_of([record], [])
    assert len(errs) >= 1
    assert any(reason in e for e in errs), errs
    assert all(e.startswith("sites[0]") for e in errs)


@pytest.mark.parametrize(("change", "reason"), [
    ({"id": "ap/1"}, "a device id is 1-64 characters"),
    ({"id": "-ap"}, "a device id is 1-64 characters"),
    ({"family": "camera"}, "family: Input should be 'wifi_ap', 'parking_spot'"),
    ({"name": "   "}, "name: String should have at least 1 character"),
    ({"dev_eui": "70b3d57ed00000"}, "dev_eui: a DevEUI is 16 hexadecimal digits"),
    ({"dev_eui": "70b3d57ed000000g"}, "dev_eui: a DevEUI is 16 hexadecimal digits"),
    ({"meter_id": "0912345678901"}, "meter_id: a PRM is 14 digits"),
    ({"meter_id": "0912345678901a"}, "meter_id: a PRM is 14 digits"),
    ({"meter_id": "091234567890"}, "meter_id: '091234567890' has 12 digits: a meter's serial"),
    ({"meter_id": 91234567890123}, "meter_id: a PRM is a string of digits"),
    ({"meter_serial": "09123456789012"}, "meter_serial: a meter serial (ADSC/ADCO) is 12 dig"),
    ({"meter_serial": "09123456789a"}, "meter_serial: a meter serial (ADSC/ADCO) is 12 dig"),
    ({"meter_serial": 91234567890}, "meter_serial: a meter serial is a string of digits"),
    ({"report_interval_s": 0}, "report_interval_s: Input should be greater than or equal to 1"),
    ({"report_interval_s": 604801}, "report_interval_s: Input should be less than or equal to"),
    ({"installed_at": "2023-03-06T10:00:00"}, "installed_at: Input should have timezone info"),
    ({"installed_at": "yesterday"}, "installed_at: Input should be a valid datetime"),
    ({"active": "perhaps"}, "active: Input should be a valid boolean"),
    ({"latitude": float("nan")}, "latitude: Input should be a finite number"),
    ({"site": "sq"}, "site: Extra inputs are not permitted"),
])
def test_bad_device_reasons(change: dict[str, Any], reason: str) -> None:
    errs = errors_of([SQUARE], [{**AP, **change}])
    assert any(reason in e for e in errs), errs
    assert all(e.startswith("devices[0] (") or e.startswith("devices[0]:") for e in errs)


def test_unknown_family_adds_no_spurious_interval_error() -> None:
    errs = errors_of([SQUARE], [{**AP, "family": "camera"}])
    assert len(errs) == 1, errs


def test_every_bad_row_is_listed_with_its_position_and_id(tmp_path: Path) -> None:
    devices: list[dict[str, Any]] = [
        AP,
        {**AP, "id": "ap-2", "report_interval_s": -5},  # bad
        {**AP, "id": "ap-3"},
        {**AP, "id": "ap-4", "dev_eui": "zz"},  # bad
        {**AP, "id": "ap-5", "installed_at": "2024-01-01 10:00"},  # bad
    ]
    path = write_json(tmp_path, [SQUARE, {**SQUARE, "id": "BAD"}], devices)
    with pytest.raises(RegistryFileError) as info:
        load_registry_file(path)
    where = [(e.where, e.record_id) for e in info.value.errors]
    assert where == [("sites[1]", "BAD"), ("devices[1]", "ap-2"), ("devices[3]", "ap-4"),
                     ("devices[4]", "ap-5")]
    message = str(info.value)
    assert "4 problem(s), nothing imported" in message
    assert all(f"devices[{i}] (ap-{i + 1})" in message for i in (1, 3, 4))


def test_cross_checks_duplicates_unknown_sites_and_kinds() -> None:
    sites = [SQUARE, ZONE, DISTRICT, {**SQUARE, "name": "again"}]
    devices: list[dict[str, Any]] = [
        AP,
        {**AP, "name": "dup"},  # duplicate id
        {"id": "s1", "family": "parking_spot", "site_id": "pz", "name": "s",
         "dev_eui": "00000000000000AA"},
        {"id": "s2", "family": "parking_spot", "site_id": "pz", "name": "s",
         "dev_eui": "00:00:00:00:00:00:00:aa"},  # same DevEUI once normalised
        {"id": "l1", "family": "grid_meter", "site_id": "dist", "name": "l",
         "meter_id": "12345678901234", "meter_serial": "123456789012"},
        {"id": "l2", "family": "grid_meter", "site_id": "dist", "name": "l",
         "meter_id": "12345678901234", "meter_serial": "123456789012"},  # duplicates
        {"id": "l3", "family": "grid_meter", "site_id": "sq", "name": "l"},  # wrong kind
        {"id": "m1", "family": "parking_meter", "site_id": "nowhere", "name": "m"},  # unknown
    ]
    errs = errors_of(sites, devices, known_sites={})
    assert errs == [
        "sites[3] (sq): duplicate site id (first at sites[0])",
        "devices[1] (ap-1): duplicate device id ap-1 (first at devices[0])",
        "devices[3] (s2): duplicate DevEUI 00000000000000aa (first at devices[2])",
        "devices[5] (l2): duplicate PRM 12345678901234 (first at devices[4])",
        "devices[5] (l2): duplicate meter serial 123456789012 (first at devices[4])",
        "devices[6] (l3): family grid_meter belongs on a district site, but site 'sq' is a "
        "square",
        "devices[7] (m1): site_id: unknown site 'nowhere'",
    ]


@pytest.mark.parametrize(("family", "kind"), [
    ("wifi_ap", "square"), ("parking_spot", "parking_zone"), ("parking_meter", "parking_zone"),
    ("grid_meter", "district"),
])
def test_family_fits_its_site_kind_only(family: str, kind: str) -> None:
    sites = [{**SQUARE, "id": k, "kind": k} for k in ("square", "parking_zone", "district")]
    for site in sites:
        doc = {"sites": sites, "devices": [{"id": "d", "family": family, "site_id": site["id"],
                                            "name": "d"}]}
        if site["kind"] == kind:
            parse_registry(doc)
        else:
            with pytest.raises(RegistryFileError, match="belongs on a"):
                parse_registry(doc)


def test_sites_outside_the_file_are_checked_only_when_known_sites_given() -> None:
    doc = {"devices": [AP]}
    assert parse_registry(doc).devices[0].site_id == "sq"  # left to the import
    assert parse_registry(doc, known_sites={"sq": SiteKind.SQUARE}).devices
    with pytest.raises(RegistryFileError, match="belongs on a square site"):
        parse_registry(doc, known_sites={"sq": SiteKind.DISTRICT})
    with pytest.raises(RegistryFileError, match="unknown site 'sq'"):
        parse_registry(doc, known_sites={})


def test_csv_with_record_column(tmp_path: Path) -> None:
    path = tmp_path / "reg.csv"
    path.write_text(
        "record,id,kind,family,site_id,name,insee,capacity,dev_eui,meter_id,"
        "report_interval_s,installed_at,active,metadata\n"
        "site,pz,parking_zone,,,Zone Gare,62041,2,,,,,,\"{\"\"tariff_zone\"\": \"\"verte\"\"}\"\n"
        "device,spot-1,,parking_spot,pz,Place 1,,,70B3D57ED0000001,,,2023-03-06T09:00:00Z,"
        "false,\n"
        "\n"
        ",spot-2,,parking_spot,pz,Place 2,,,70b3d57ed0000002,,120,,,\n",
        encoding="utf-8")
    reg = load_registry_file(path)
    assert isinstance(reg, RegistryFile)
    (site,) = reg.sites
    assert site.capacity == 2 and site.metadata == {"tariff_zone": "verte"}
    spot1, spot2 = reg.devices
    assert spot1.active is False and spot1.dev_eui == "70b3d57ed0000001"
    assert spot1.report_interval_s == 600 and spot2.report_interval_s == 120
    assert spot1.installed_at == datetime(2023, 3, 6, 9, tzinfo=UTC)


def test_csv_of_devices_only_and_its_errors_by_line(tmp_path: Path) -> None:
    path = tmp_path / "devices.csv"
    path.write_text(
        "id,family,site_id,name,metadata,capacity\n"
        "ap-1,wifi_ap,sq,AP 1,,\n"
        "ap-2,wifi_ap,sq,AP 2,{not json},\n"
        "ap-3,wifi_ap,sq,AP 3,,12\n"
        "ap-4,toaster,sq,AP 4,,\n"
        "ap-5,wifi_ap,sq,AP 5,\"[1, 2]\",\n",
        encoding="utf-8")
    with pytest.raises(RegistryFileError) as info:
        load_registry_file(path)
    errs = [str(e) for e in info.value.errors]
    assert errs[0].startswith("line 3 (ap-2): metadata: not valid JSON")
    assert errs[1] == "line 4 (ap-3): capacity: column does not apply to a device"
    assert errs[2].startswith("line 5 (ap-4): family: Input should be")
    assert errs[3] == "line 6 (ap-5): metadata: Input should be a valid dictionary"
    assert len(errs) == 4


def test_csv_header_and_record_problems(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("name,colour\nx,red\n", encoding="utf-8")
    with pytest.raises(RegistryFileError) as info:
        load_registry_file(path)
    assert [str(e) for e in info.value.errors] == [
        "line 1: unknown column 'colour'", "line 1: the header has no 'id' column"]
    path.write_text("record,id,name\nsensor,x,X\n", encoding="utf-8")
    with pytest.raises(RegistryFileError, match="record: expected 'site' or 'device'"):
        load_registry_file(path)


@pytest.mark.parametrize(("name", "text", "reason"), [
    ("a.json", "{", "line 1: not valid JSON"),
    ("a.json", "[]", 'file: expected an object {"sites"'),
    ("a.json", '{"sites": {}, "things": []}', "file: unknown key 'things'"),
    ("a.json", '{"sites": [1]}', "sites[0]: expected an object"),
    ("a.yaml", "sites: []", "file: unsupported file type '.yaml'"),
])
def test_file_level_problems(tmp_path: Path, name: str, text: str, reason: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RegistryFileError) as info:
        load_registry_file(path)
    assert any(str(e).startswith(reason) for e in info.value.errors), info.value.errors


def test_missing_file_is_a_registry_error(tmp_path: Path) -> None:
    with pytest.raises(RegistryFileError, match="cannot read"):
        load_registry_file(tmp_path / "nope.json")


def test_demo_city_file_is_the_generator_output_and_valid() -> None:
    assert DEMO_CITY_FILE.read_text(encoding="utf-8") == dumps(build_demo_city())
    assert build_demo_city(seed=1) != build_demo_city()
    reg = load_registry_file(DEMO_CITY_FILE, known_sites={})
    by_family: dict[Family, int] = {}
    for d in reg.devices:
        by_family[d.family] = by_family.get(d.family, 0) + 1
    assert by_family == {Family.WIFI_AP: 8, Family.PARKING_SPOT: 300,
                         Family.PARKING_METER: 12, Family.GRID_METER: 500}
    kinds = [s.kind.value for s in reg.sites]
    assert kinds.count("square") == 2 and kinds.count("parking_zone") == 3
    assert kinds.count("district") == 2
    assert {s.insee for s in reg.sites} == {"62041"}
    spots = {s.id: 0 for s in reg.sites if s.kind is SiteKind.PARKING_ZONE}
    for d in reg.devices:
        if d.family is Family.PARKING_SPOT:
            assert d.dev_eui is not None
            spots[d.site_id] += 1
    assert {s.id: s.capacity for s in reg.sites if s.id in spots} == spots
    meters = [d for d in reg.devices if d.family is Family.GRID_METER]
    assert all(d.meter_id is not None and len(d.meter_id) == 14 for d in meters)
    # Serials as Linky meters carry them: 12 digits, distinct from the PRMs, and unique.
    serials = [d.meter_serial for d in meters]
    assert all(s is not None and re.fullmatch(r"[0-9]{12}", s) for s in serials)
    assert len(set(serials)) == len(meters)
    assert not {d.meter_id for d in meters} & set(serials)
    assert {d.metadata["profile"] for d in meters} == {"residential", "professional"}
    assert {d.metadata["phases"] for d in meters} == {1, 3}
    assert all(d.id == d.id.lower() and "/" not in d.id for d in reg.devices)
