"""The dashboard's server side against the real database: the page and its files with their
security headers, one-time sign-in codes through HTTP, the rejections of the last minutes
for a ``read`` token, and the ingestor counters when no ingestor answers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.tokens import create_token
from beffroi.settings import Settings
from beffroi.stack import Stack
from tests.conftest import throwaway_database

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def client(stack: Stack, settings: Settings) -> Iterator[tuple[TestClient, dict[str, str], str]]:
    from api.main import create_app

    with throwaway_database(stack, settings, tag="dashr") as db_url:
        with psycopg.connect(db_url) as conn:
            tokens = {"read": create_token(conn, "dash-read", ["read"])[0]}
        app = create_app(settings.model_copy(update={"database_url": SecretStr(db_url),
                                                     "ingest_metrics_port": 0}))
        with TestClient(app) as c:
            yield c, tokens, db_url


def test_the_page_and_its_files_carry_a_strict_policy(
        client: tuple[TestClient, dict[str, str], str]) -> None:
    c, _, _ = client
    page = c.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self';" in csp
    assert "frame-ancestors 'none'" in csp and "unsafe" not in csp
    js = c.get("/dashboard/static/js/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert js.headers["x-content-type-options"] == "nosniff"
    assert c.get("/dashboard/static/vendor/uplot/uPlot.iife.min.js").status_code == 200
    assert c.get("/dashboard/static/../main.py").status_code == 404
    # The API's own pages keep their headers (Swagger UI loads its own assets).
    assert "content-security-policy" not in c.get("/docs").headers
    assert c.get("/dashboard/config.json").json()["timezone"] == "Europe/Paris"


def test_a_sign_in_code_is_exchanged_once(
        client: tuple[TestClient, dict[str, str], str]) -> None:
    c, tokens, _ = client
    assert c.post("/v1/dashboard/links").status_code == 401
    r = c.post("/v1/dashboard/links", headers={"Authorization": f"Bearer {tokens['read']}"})
    assert r.status_code == 201
    body = r.json()
    assert body["path"] == f"/#/connexion?code={body['code']}"
    assert tokens["read"] not in body["path"]
    first = c.post("/dashboard/signin", json={"code": body["code"]})
    assert first.status_code == 200 and first.json() == {"token": tokens["read"]}
    assert first.headers["cache-control"] == "no-store"
    again = c.post("/dashboard/signin", json={"code": body["code"]})
    assert again.status_code == 401 and again.json()["error"] == "unauthorized"
    assert c.post("/dashboard/signin", json={"code": "x"}).status_code == 422


def test_rejections_of_the_last_minutes_by_reason(
        client: tuple[TestClient, dict[str, str], str]) -> None:
    c, tokens, db_url = client
    now = datetime.now(UTC)
    rows = [(now - timedelta(minutes=5), "unknown_device")] * 3 + \
        [(now - timedelta(minutes=50), "invalid_json")] * 2 + \
        [(now - timedelta(minutes=90), "invalid_json")] * 4
    with psycopg.connect(db_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO dead_letters (received_at, topic, device_id, reason, "
                        "detail, payload, payload_size) VALUES (%s, 'city/x', NULL, %s, '', "
                        "'{}', 2)", rows)
    auth = {"Authorization": f"Bearer {tokens['read']}"}
    hour = c.get("/v1/dashboard/rejections", headers=auth).json()
    assert hour["total"] == 5
    assert hour["by_reason"] == [{"reason": "unknown_device", "count": 3},
                                 {"reason": "invalid_json", "count": 2}]
    two = c.get("/v1/dashboard/rejections", params={"minutes": 120}, headers=auth).json()
    assert two["total"] == 9 and two["by_reason"][0] == {"reason": "invalid_json", "count": 6}
    assert c.get("/v1/dashboard/rejections", params={"minutes": 0},
                 headers=auth).status_code == 422
    assert c.get("/v1/dashboard/rejections").status_code == 401


def test_ingest_counters_say_when_no_ingestor_answers(
        client: tuple[TestClient, dict[str, str], str]) -> None:
    c, tokens, _ = client
    body = c.get("/v1/dashboard/ingest",
                 headers={"Authorization": f"Bearer {tokens['read']}"}).json()
    assert body["available"] is False and body["at"]
