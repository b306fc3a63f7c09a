"""A request cannot hold a database connection for ever: its statements stop at the
statement timeout (503 with the reason), and a client that disconnects has its query
cancelled. The API runs in a real uvicorn server; a query is made slow by locking the
table it reads from another connection (the real route's real SQL waits on the lock)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from pydantic import SecretStr

from api.tokens import create_token
from beffroi.settings import Settings
from beffroi.stack import Stack
from devices import store
from tests.conftest import random_tag, throwaway_database
from tests.unit.test_sim_stream import tiny_city

pytestmark = pytest.mark.stack

ENERGY = "/v1/grid/meters/{p}linky-1/energy?from=2025-11-01&to=2025-11-08&bucket=1h&source=raw"


def _until(what: str, check: Callable[[], Any], deadline_s: float) -> Any:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        out = check()
        if out:
            return out
        time.sleep(0.05)
    raise AssertionError(f"not within {deadline_s} s: {what}")


@contextlib.contextmanager
def _serve(settings: Settings) -> Iterator[str]:
    from api.main import create_app

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    _until("the server started", lambda: server.started, 30)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture(scope="module")
def city(stack: Stack, settings: Settings) -> Iterator[tuple[str, str, str, Settings]]:
    p = f"{random_tag('o')}-"
    with throwaway_database(stack, settings, "timeout") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            store.import_registry(conn, tiny_city(prefix=p))
            token, _ = create_token(conn, f"{p}t", ["read"])
        yield url, token, p, settings.model_copy(update={"database_url": SecretStr(url)})


@pytest.fixture
def locked(city: tuple[str, str, str, Settings]) -> Iterator[psycopg.Connection[Any]]:
    """grid_readings locked by another transaction for the duration of the test."""
    with psycopg.connect(city[0]) as locker:
        locker.execute("LOCK TABLE grid_readings IN ACCESS EXCLUSIVE MODE")
        yield locker
        locker.rollback()


def _api_queries(url: str) -> list[tuple[int, str, str | None]]:
    """(pid, state, wait event type) of the API's backends running the energy query (its
    statement names grid_energy, the function reading grid_readings)."""
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "SELECT pid, state, wait_event_type FROM pg_stat_activity WHERE "
            "datname = current_database() AND application_name = 'beffroi-api' "
            "AND query LIKE '%%grid_%%'").fetchall()


def test_the_pool_connections_have_the_statement_timeout(
        city: tuple[str, str, str, Settings]) -> None:
    from fastapi.testclient import TestClient

    from api.main import create_app

    assert Settings().api_statement_timeout_s == 10.0  # the default
    with TestClient(create_app(city[3])) as client:
        pool = client.app.state.pool  # type: ignore[attr-defined]

        async def show() -> str:
            async with pool.connection() as conn:
                row = await (await conn.execute("SHOW statement_timeout")).fetchone()
                return str(row[0])

        assert client.portal.call(show) == "10s"  # type: ignore[union-attr]


@pytest.mark.parametrize(("jit", "shown"), [(None, "off"), (True, "on")])
def test_the_pool_connections_are_autocommit_without_jit_unless_asked(
        city: tuple[str, str, str, Settings], jit: bool | None, shown: str) -> None:
    """JIT compilation costs the API's queries more than it saves: off unless api_jit.
    Connections start in autocommit (no per-request switch) and send bucket edges as
    one packed binary array, equal to what psycopg's own list adaptation sends."""
    from datetime import UTC, datetime, timedelta

    from fastapi.testclient import TestClient
    from psycopg.adapt import PyFormat

    from api.db import InstantsDumper
    from api.main import create_app
    from api.timeq import Instants

    s = city[3] if jit is None else city[3].model_copy(update={"api_jit": jit})
    edges = [datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
             *(datetime(2025, 10, 26, tzinfo=UTC) + timedelta(minutes=5 * i) for i in range(300))]
    with TestClient(create_app(s)) as client:
        pool = client.app.state.pool  # type: ignore[attr-defined]

        async def show() -> tuple[str, bool, bool, bool]:
            async with pool.connection() as conn:
                row = await (await conn.execute("SHOW jit")).fetchone()
                packed = await (await conn.execute(
                    "SELECT %s::timestamptz[] = %s::timestamptz[], %s::timestamptz[]",
                    (Instants(edges), list(edges), Instants(edges)))).fetchone()
                dumper = conn.adapters.get_dumper(Instants, PyFormat.BINARY)
                return (str(row[0]), conn.autocommit, packed[0] and packed[1] == edges,
                        dumper is InstantsDumper)

        assert client.portal.call(show) == (shown, True, True, True)  # type: ignore[union-attr]


def test_a_statement_past_the_timeout_is_cancelled_with_a_503(
        city: tuple[str, str, str, Settings], locked: psycopg.Connection[Any]) -> None:
    url, token, p, s = city
    with _serve(s.model_copy(update={"api_statement_timeout_s": 0.5})) as base:
        t0 = time.monotonic()
        r = httpx.get(base + ENERGY.format(p=p), timeout=30,
                      headers={"Authorization": f"Bearer {token}"})
        assert time.monotonic() - t0 < 10
        assert r.status_code == 503, r.text
        body = r.json()
        assert body["error"] == "unavailable"
        assert "0.5 s statement timeout" in body["detail"]
        assert not [q for q in _api_queries(url) if q[1] == "active"]
        locked.rollback()  # the lock goes: the same request is answered
        r = httpx.get(base + ENERGY.format(p=p), timeout=30,
                      headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text


def test_a_client_that_disconnects_has_its_query_cancelled(
        city: tuple[str, str, str, Settings], locked: psycopg.Connection[Any]) -> None:
    url, token, p, s = city
    with _serve(s) as base:  # the default 10 s timeout: longer than the deadline below
        host, port = base.removeprefix("http://").split(":")
        client = socket.create_connection((host, int(port)))
        client.sendall((f"GET {ENERGY.format(p=p)} HTTP/1.1\r\nHost: {host}\r\n"
                        f"Authorization: Bearer {token}\r\n\r\n").encode())
        waiting = _until("the API's query waits on the lock", lambda: [
            q for q in _api_queries(url) if q[1] == "active" and q[2] == "Lock"], 10)
        (pid, _, _), = waiting
        client.close()
        # the backend stops running the query well before the statement timeout, while
        # the lock it waited for is still held
        _until("the query is cancelled", lambda: not [
            q for q in _api_queries(url) if q[0] == pid and q[1] == "active"], 5)
        assert locked.execute("SELECT count(*) FROM pg_locks WHERE relation = "
                              "'grid_readings'::regclass AND mode = 'AccessExclusiveLock' "
                              "AND granted").fetchone() == (1,)
        locked.rollback()
        r = httpx.get(base + ENERGY.format(p=p), timeout=30,
                      headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text  # the pool is sound
