"""Registry lookups are kept by the API process until the registry changes: a change made
without its notification is not seen (they are kept), the same change notified is seen by
the next request once the process received it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.lookups import RegistryCache
from beffroi.settings import Settings
from beffroi.stack import Stack
from devices import store
from tests.integration.api_helpers import SeededApi, seeded_api
from tests.unit.test_sim_stream import tiny_city

pytestmark = pytest.mark.stack

ENERGY = "/v1/grid/districts/{p}dist/energy?from=2025-11-01&to=2025-11-02&bucket=1d"


def _seed(conn: psycopg.Connection[Any], p: str) -> None:
    store.import_registry(conn, tiny_city(prefix=p))


@pytest.fixture(scope="module")
def city(stack: Stack, settings: Settings) -> Iterator[SeededApi]:
    with seeded_api(stack, settings, "lookups", "k", _seed) as api:
        yield api


def _live(registry: RegistryCache, generation: int | None = None,
          deadline_s: float = 10.0) -> None:
    """Barrier: the process listens (and, given ``generation``, received a change since)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if registry.live and (generation is None or registry.generation > generation):
            return
        time.sleep(0.02)
    raise AssertionError(f"registry listener not live/notified within {deadline_s} s")


def _meters(client: TestClient, p: str, token: str) -> Any:
    r = client.get(ENERGY.format(p=p), headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return r.json()["meters_total"]


def test_a_district_and_its_meters_are_kept_until_a_change_is_notified(
        city: SeededApi) -> None:
    client, token, p = city.client, city.token, city.p
    with psycopg.connect(city.url, autocommit=True) as conn:
        registry: RegistryCache = client.app.state.registry  # type: ignore[attr-defined]
        _live(registry)
        assert _meters(client, p, token) == 4
        # Moved out without its notification: the kept answer stays (it is kept).
        with conn.transaction():
            conn.execute("ALTER TABLE devices DISABLE TRIGGER devices_changed")
            conn.execute("UPDATE devices SET site_id = %s WHERE id = %s",
                         (f"{p}sq", f"{p}linky-4"))
            conn.execute("ALTER TABLE devices ENABLE TRIGGER devices_changed")
        assert _meters(client, p, token) == 4
        # Any change notified: the next request sees the registry as it is.
        generation = registry.generation
        conn.execute("UPDATE sites SET name = name WHERE id = %s", (f"{p}dist",))
        _live(registry, generation)
        assert _meters(client, p, token) == 3
        conn.execute("UPDATE devices SET site_id = %s WHERE id = %s",
                      (f"{p}dist", f"{p}linky-4"))


def test_an_unknown_site_is_not_kept_as_unknown(city: SeededApi) -> None:
    """A 404 asks again: the site created next is found at once, notified or not."""
    client, token, p = city.client, city.token, city.p
    with psycopg.connect(city.url, autocommit=True) as conn:
        _live(client.app.state.registry)  # type: ignore[attr-defined]
        path = ENERGY.format(p=f"{p}new-")
        auth = {"Authorization": f"Bearer {token}"}
        assert client.get(path, headers=auth).status_code == 404
        with conn.transaction():
            conn.execute("ALTER TABLE sites DISABLE TRIGGER sites_changed")
            conn.execute("INSERT INTO sites (id, kind, name, insee) VALUES (%s, 'district', "
                         "'Nouveau', '62041')", (f"{p}new-dist",))
            conn.execute("ALTER TABLE sites ENABLE TRIGGER sites_changed")
        r = client.get(path, headers=auth)
        assert r.status_code == 200 and r.json()["meters_total"] == 0, r.text
