"""The API application the contract test serves with uvicorn: the real one, with an empty
scenario directory, so that generated ``POST /v1/operate/runs`` requests never start a
simulator (every scenario name is then unknown: 404)."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

from api.main import create_app
from api.runs import RunManager

SCENARIO_DIR_ENV = "BEFFROI_TEST_SCENARIO_DIR"


def create() -> FastAPI:
    """``uvicorn tests.integration.contract_app:create --factory``."""
    app = create_app()
    app.state.runs = RunManager(settings=app.state.settings,
                                scenario_dir=Path(os.environ[SCENARIO_DIR_ENV]))
    return app
