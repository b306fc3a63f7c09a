"""The API in the test process over a test database, read with a token."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.tokens import create_token
from beffroi.settings import Settings
from beffroi.stack import Stack
from tests.conftest import random_tag, throwaway_database


class ApiReader:
    """A client of the API with one token."""

    def __init__(self, client: TestClient, token: str) -> None:
        self.client = client
        self.token = token

    def call(self, url: str) -> httpx.Response:
        """GET with the token, whatever the status."""
        r: httpx.Response = self.client.get(
            url, headers={"Authorization": f"Bearer {self.token}"})
        return r

    def get(self, url: str) -> Any:
        """GET with the token; the JSON body of a 200 (anything else fails the test)."""
        r = self.call(url)
        assert r.status_code == 200, r.text
        return r.json()


@contextlib.contextmanager
def api_client(settings: Settings, db_url: str,
               **overrides: Any) -> Iterator[tuple[TestClient, Settings]]:
    """The API app on ``db_url`` (lifespan run) and the settings it was made with."""
    from api.main import create_app

    s = settings.model_copy(update={"database_url": SecretStr(db_url), **overrides})
    with TestClient(create_app(s)) as client:
        yield client, s


@dataclass
class SeededApi:
    """A throwaway database filled by the test, a read token and the API on it."""

    client: TestClient
    token: str
    p: str  # the prefix of every id the seed wrote
    url: str
    settings: Settings


@contextlib.contextmanager
def seeded_api(stack: Stack, settings: Settings, name: str, tag: str,
               seed: Callable[[psycopg.Connection[Any], str], None],
               **overrides: Any) -> Iterator[SeededApi]:
    """A throwaway database that ``seed`` fills with ids under a fresh prefix, a read token
    and the API on it (``overrides``: more settings of the app)."""
    p = f"{random_tag(tag)}-"
    with throwaway_database(stack, settings, name) as url:
        with psycopg.connect(url, autocommit=True) as conn:
            seed(conn, p)
            token, _ = create_token(conn, f"{p}t", ["read"])
        with api_client(settings, url, **overrides) as (client, s):
            yield SeededApi(client, token, p, url, s)
