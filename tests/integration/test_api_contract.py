"""The OpenAPI document is the contract: Schemathesis (every check) against the real API
process over a day of the demo city, with a token of every scope, finds nothing. Valid
requests by the schema are answered, invalid ones refused with 4xx, no input gives a 5xx,
answers match their documented statuses, media types and schemas.

Bounded: a fixed seed and a few examples per operation (about a minute)."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest

from api.tokens import create_token
from beffroi.settings import Settings
from beffroi.stack import Stack
from bench.apilib.load import copy_blocks
from bench.apilib.measure import api_server
from bench.apilib.synth import Year, city_blocks
from devices.democity import DEMO_CITY_FILE
from devices.registry import load_registry_file
from devices.store import import_registry
from tests.conftest import throwaway_database
from tests.integration.contract_app import SCENARIO_DIR_ENV

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
SEED = 20251115
MAX_EXAMPLES = int(os.environ.get("BEFFROI_CONTRACT_EXAMPLES", "4"))


@dataclass(frozen=True)
class Served:
    """The API's base URL and an admin token (every scope)."""

    base: str
    token: str


@pytest.fixture(scope="module")
def served(stack: Stack, settings: Settings, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("contract")
    (tmp / "scenarios").mkdir()
    with throwaway_database(stack, settings, "ct") as url:
        reg = load_registry_file(DEMO_CITY_FILE)
        with psycopg.connect(url, autocommit=True) as conn:
            import_registry(conn, reg)
            conn.execute(
                "INSERT INTO dead_letters (received_at, topic, device_id, reason, detail, "
                "payload, payload_size) VALUES (now(), 'city/parking/spot-gare-001/state', "
                "'spot-gare-001', 'invalid_json', 'Expecting value', '{\"state\": ', 10)")
        copy_blocks(url, city_blocks(reg, Year(date(2025, 11, 15), 1,
                                               ZoneInfo("Europe/Paris")), 7))
        with psycopg.connect(url) as conn:
            token, _ = create_token(conn, f"contract-{secrets.token_hex(3)}", ["admin"])
        os.environ[SCENARIO_DIR_ENV] = str(tmp / "scenarios")
        # The open-data routes' per-address limit would answer most requests with 429.
        os.environ["BEFFROI_OPENDATA_RATE_PER_MINUTE"] = "1000000"
        try:
            with api_server(url, tmp / "api.log",
                            app="tests.integration.contract_app:create") as base:
                yield Served(base, token)
        finally:
            os.environ.pop(SCENARIO_DIR_ENV, None)
            os.environ.pop("BEFFROI_OPENDATA_RATE_PER_MINUTE", None)


def test_schemathesis_finds_nothing(served: Served, tmp_path: Path) -> None:
    # Every check, every phase (examples, coverage, fuzzing, stateful); the hooks keep the
    # two rules OpenAPI cannot state (to after from, range per bucket) in valid requests.
    # One worker: Python 3.11's ast.parse (Hypothesis describes lambdas with it) is not
    # safe across threads ("AST constructor recursion depth mismatch").
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.integration.contract_hooks",
           "PYTHONPATH": str(ROOT)}
    cmd = [str(Path(sys.executable).with_name("st")), "--no-color",
           "--config-file", str(Path(__file__).with_name("schemathesis.toml")), "run",
           f"{served.base}/openapi.json", "--checks", "all", "--seed", str(SEED),
           "--max-examples", str(MAX_EXAMPLES), "--workers", "1", "--no-shrink",
           "--request-timeout", "30", "--suppress-health-check", "all",
           "--header", f"Authorization: Bearer {served.token}",
           "--report", "junit", "--report-dir", str(tmp_path)]
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600, check=False)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-20000:]
    assert "No issues found" in out or "passed" in out, out[-5000:]


def test_the_served_document_states_the_constraints(served: Served) -> None:
    spec = httpx.get(f"{served.base}/openapi.json", timeout=30).json()
    params = {p["name"]: p for p in spec["paths"]["/v1/wifi/squares/{square_id}/visitors"]
              ["get"]["parameters"]}
    assert params["bucket"]["schema"]["enum"] == ["1h", "1d"]
    assert "pattern" in params["from"]["schema"] and "pattern" in params["to"]["schema"]
    assert params["tz"]["schema"]["$ref"] == "#/components/schemas/TimeZone"
    zones = spec["components"]["schemas"]["TimeZone"]["pattern"]
    assert re.fullmatch(zones, "Europe/Paris") and not re.fullmatch(zones, "Mars/Olympus")
    peaks = spec["paths"]["/v1/grid/districts/{district_id}/peaks"]["get"]
    bucket = next(p for p in peaks["parameters"] if p["name"] == "bucket")
    assert bucket["schema"]["enum"] == ["1d", "1w", "1mo"]
    assert bucket["schema"]["default"] == "1d"
    for path, ops in spec["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, op in ops.items():
            assert {"400", "401", "403", "406", "422", "503"} <= set(op["responses"]), (
                method, path)
            if "{" in path:
                assert "404" in op["responses"], (method, path)
            assert op["security"] == [{"bearer": []}]
