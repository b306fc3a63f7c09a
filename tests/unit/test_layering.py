"""Beffroi's core (settings, endpoints) imports nothing else of the project, and production
code never reaches into the development stack: a missing endpoint is an error at start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("beffroi", "devices", "ingest", "api", "simulators")


def _imported(*modules: str) -> list[str]:
    """Project modules loaded by importing ``modules`` in a fresh interpreter."""
    code = ("import json, sys\n" + "".join(f"import {m}\n" for m in modules) +
            f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {PROJECT!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    loaded: list[str] = json.loads(out.stdout)
    return loaded


def test_core_imports_nothing_else_of_the_project() -> None:
    assert set(_imported("beffroi.settings", "beffroi.endpoints")) == {
        "beffroi", "beffroi.settings", "beffroi.endpoints"}


def test_production_code_does_not_import_the_development_stack() -> None:
    loaded = _imported("api.main", "api.runs", "api.routes.operate", "ingest.runner",
                       "ingest.service", "devices.credentials", "simulators.publisher",
                       "beffroi.cli", "beffroi.migrate")
    assert "beffroi.endpoints" in loaded
    assert [m for m in loaded if m.startswith("beffroi.stack")] == []


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEFFROI_")}
    return env | {"BEFFROI_STATE_DIR": str(tmp_path / "state")} | extra


@pytest.mark.parametrize(("argv", "variable"), [
    (["migrate"], "BEFFROI_DATABASE_URL"),
    (["ingest"], "BEFFROI_DATABASE_URL"),
    (["api"], "BEFFROI_DATABASE_URL"),
    (["tokens", "list"], "BEFFROI_DATABASE_URL"),
    (["maintain"], "BEFFROI_DATABASE_URL"),
])
def test_missing_database_setting_is_an_error_naming_it(tmp_path: Path, argv: list[str],
                                                        variable: str) -> None:
    out = subprocess.run([sys.executable, "-m", "beffroi.cli", *argv], capture_output=True,
                         text=True, cwd=tmp_path, env=_env(tmp_path), timeout=60)
    assert out.returncode == 2, out.stderr
    assert variable in out.stderr
    assert not (tmp_path / "state").exists()  # no secrets.json, no stack touched


@pytest.mark.parametrize(("argv", "variable"), [
    (["ingest"], "BEFFROI_BROKER_URL"),
    (["api"], "BEFFROI_BROKER_URL"),
])
def test_missing_broker_setting_is_an_error_naming_it(tmp_path: Path, argv: list[str],
                                                      variable: str) -> None:
    env = _env(tmp_path, BEFFROI_DATABASE_URL="postgresql://nobody@127.0.0.1:9/none")
    out = subprocess.run([sys.executable, "-m", "beffroi.cli", *argv], capture_output=True,
                         text=True, cwd=tmp_path, env=env, timeout=60)
    assert out.returncode == 2, out.stderr
    assert variable in out.stderr
    assert not (tmp_path / "state").exists()


def test_missing_ingest_password_is_an_error_naming_it(tmp_path: Path) -> None:
    env = _env(tmp_path, BEFFROI_DATABASE_URL="postgresql://nobody@127.0.0.1:9/none",
               BEFFROI_BROKER_URL="mqtt://127.0.0.1:9")
    out = subprocess.run([sys.executable, "-m", "beffroi.cli", "ingest"], capture_output=True,
                         text=True, cwd=tmp_path, env=env, timeout=60)
    assert out.returncode == 2, out.stderr
    assert "BEFFROI_INGEST_MQTT_PASSWORD" in out.stderr
