"""/health and /ready of the API against the real services."""

from __future__ import annotations

from fastapi.testclient import TestClient

from beffroi.settings import Settings
from beffroi.stack import Stack


def test_health_and_ready(stack: Stack, db_url: str, settings: Settings) -> None:
    from pydantic import SecretStr

    app_settings = settings.model_copy(update={"database_url": SecretStr(db_url)})
    from api.main import create_app

    with TestClient(create_app(app_settings)) as client:
        assert client.get("/health").json() == {"status": "ok"}
        ready = client.get("/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}


def test_ready_reports_unreachable_broker(stack: Stack, db_url: str, settings: Settings) -> None:
    from pydantic import SecretStr

    from api.main import create_app

    bad = settings.model_copy(update={"database_url": SecretStr(db_url),
                                      "broker_url": "mqtt://127.0.0.1:1"})
    with TestClient(create_app(bad)) as client:
        ready = client.get("/ready")
    assert ready.status_code == 503
    assert ready.json()["checks"]["broker"].startswith("unreachable")
