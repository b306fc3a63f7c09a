"""``beffroi tokens`` create / list / revoke against the real database, and the API
accepting then refusing the token."""

from __future__ import annotations

import json
import secrets
import time

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.tokens import create_token, hash_token, revoke_token
from beffroi.cli import main
from beffroi.settings import Settings
from beffroi.stack import Stack

pytestmark = pytest.mark.stack

SLACK_S = 2.0  # a loaded machine's delay between two requests, on top of the cache's


def _app(settings: Settings, db_url: str, cache_s: float) -> FastAPI:
    from api.main import create_app

    return create_app(settings.model_copy(update={"database_url": SecretStr(db_url),
                                                  "api_token_cache_s": cache_s}))


def _status_after(client: TestClient, auth: dict[str, str], *, deadline: float) -> int:
    """The status of /v1/sites once it is no longer 200, or 200 if it still is at
    ``deadline``."""
    while True:
        status = client.get("/v1/sites", headers=auth).status_code
        if status != 200 or time.monotonic() >= deadline:
            return int(status)
        time.sleep(0.05)


def test_token_lifecycle(stack: Stack, settings: Settings, db_url: str,
                         capsys: pytest.CaptureFixture[str],
                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEFFROI_DATABASE_URL", db_url)
    name = f"svc-{secrets.token_hex(3)}"
    assert main(["tokens", "create", "--name", name, "--scope", "read",
                 "--scope", "operate"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("bfr_") and len(token) > 40
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT token_hash, scopes FROM api_tokens WHERE name = %s",
                           (name,)).fetchone()
    assert row is not None and bytes(row[0]) == hash_token(token)  # only the hash is stored
    assert row[1] == ["operate", "read"]

    assert main(["tokens", "list", "--format", "json"]) == 0
    listed = [t for t in json.loads(capsys.readouterr().out) if t["name"] == name]
    assert len(listed) == 1 and token not in json.dumps(listed)

    with TestClient(_app(settings, db_url, 1.0)) as client:
        auth = {"Authorization": f"Bearer {token}"}
        assert client.get("/v1/sites", headers=auth).status_code == 200
        assert main(["tokens", "revoke", "--name", name]) == 0
        # Refused once the process stops trusting what it verified (api_token_cache_s).
        assert _status_after(client, auth, deadline=time.monotonic() + 1.0 + SLACK_S) == 401
    assert main(["tokens", "revoke", "--name", name]) == 1  # nothing left to revoke
    assert main(["tokens", "list", "--all", "--format", "json"]) == 0
    out = capsys.readouterr().out
    revoked = [t for t in json.loads(out[out.index("["):]) if t["name"] == name]
    assert revoked[0]["revoked_at"] is not None and revoked[0]["last_used_at"] is not None


def test_unknown_scope_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["tokens", "create", "--name", "x", "--scope", "root"])


def test_revoked_token_is_refused_within_the_cache_delay(
        stack: Stack, settings: Settings, db_url: str) -> None:
    """A verified token is trusted ``api_token_cache_s`` without a query: revoked, it is
    refused once that delay has passed (not later), and a token the process never saw is
    refused at once."""
    cache_s = 1.5
    with psycopg.connect(db_url) as conn:
        token, info = create_token(conn, f"cache-{secrets.token_hex(3)}", ["read"])
        unseen, unseen_info = create_token(conn, f"unseen-{secrets.token_hex(3)}", ["read"])
    with TestClient(_app(settings, db_url, cache_s)) as client:
        auth = {"Authorization": f"Bearer {token}"}
        assert client.get("/v1/sites", headers=auth).status_code == 200
        with psycopg.connect(db_url) as conn:
            assert revoke_token(conn, token_id=info.id)
            assert revoke_token(conn, token_id=unseen_info.id)
        revoked_at = time.monotonic()
        assert client.get("/v1/sites", headers={
            "Authorization": f"Bearer {unseen}"}).status_code == 401
        status = _status_after(client, auth, deadline=revoked_at + cache_s + SLACK_S)
        waited = time.monotonic() - revoked_at
    assert status == 401, f"still accepted {waited:.1f} s after its revocation"


def test_a_verified_token_is_not_asked_again_within_the_delay(
        stack: Stack, settings: Settings, db_url: str) -> None:
    """With a long delay, a token revoked after its first use is still served (from the
    cache, no query); with 0, every request asks the database: refused at once."""
    for cache_s, expected in ((300.0, 200), (0.0, 401)):
        with psycopg.connect(db_url) as conn:
            token, info = create_token(conn, f"ttl-{secrets.token_hex(3)}", ["read"])
        with TestClient(_app(settings, db_url, cache_s)) as client:
            auth = {"Authorization": f"Bearer {token}"}
            assert client.get("/v1/sites", headers=auth).status_code == 200
            with psycopg.connect(db_url) as conn:
                assert revoke_token(conn, token_id=info.id)
            assert client.get("/v1/sites", headers=auth).status_code == expected, cache_s
