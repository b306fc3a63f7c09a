"""``beffroi tokens`` create / list / revoke against the real database, and the API
accepting then refusing the token."""

from __future__ import annotations

import json
import secrets

import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.tokens import hash_token
from beffroi.cli import main
from beffroi.settings import Settings
from beffroi.stack import Stack

pytestmark = pytest.mark.stack


def test_token_lifecycle(stack: Stack, settings: Settings, db_url: str,
                         capsys: pytest.CaptureFixture[str],
                         monkeypatch: pytest.MonkeyPatch) -> None:
    from api.main import create_app

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

    app = create_app(settings.model_copy(update={"database_url": SecretStr(db_url)}))
    with TestClient(app) as client:
        auth = {"Authorization": f"Bearer {token}"}
        assert client.get("/v1/sites", headers=auth).status_code == 200
        assert main(["tokens", "revoke", "--name", name]) == 0
        assert client.get("/v1/sites", headers=auth).status_code == 401
    assert main(["tokens", "revoke", "--name", name]) == 1  # nothing left to revoke
    assert main(["tokens", "list", "--all", "--format", "json"]) == 0
    out = capsys.readouterr().out
    revoked = [t for t in json.loads(out[out.index("["):]) if t["name"] == name]
    assert revoked[0]["revoked_at"] is not None and revoked[0]["last_used_at"] is not None


def test_unknown_scope_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["tokens", "create", "--name", "x", "--scope", "root"])
