"""Fixtures shared by all tests: settings, the real local stack, a throwaway database.

Integration tests run against the real Mosquitto and TimescaleDB started by the project's
own development stack; if they cannot be started the fixtures fail (they never skip). The
commands run in-process use that stack too (BEFFROI_DEV_STACK=1).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator

import psycopg
import pytest

from beffroi.migrate import migrate
from beffroi.settings import Settings
from beffroi.stack import Stack
from devices.privacy import scrub_personal


def random_tag(prefix: str = "") -> str:
    """``prefix`` and 6 random hex digits, drawn again until the log filter would leave
    them alone: some draws read as licence plates (``td114ca``) and would be scrubbed from
    the very logs a test reads."""
    while True:
        hexa = secrets.token_hex(3)
        forms = [prefix + hexa, hexa, *(c + hexa for c in "abcdefghijklmnopqrstuvwxyz")]
        if all(scrub_personal(f" {f}-") == f" {f}-" for f in forms):
            return prefix + hexa


def pytest_configure(config: pytest.Config) -> None:
    """Commands run by the tests take the endpoints left unset from the development stack."""
    os.environ.setdefault("BEFFROI_DEV_STACK", "1")


@pytest.fixture(scope="session")
def stack() -> Stack:
    """The running development stack (started if needed)."""
    st = Stack(Settings())
    st.up()
    return st


@pytest.fixture(scope="session")
def settings(stack: Stack) -> Settings:
    """Settings of the test run as production code reads them: BEFFROI_* from the
    environment, the endpoints left unset taken from the stack."""
    return stack.client_settings()


@contextlib.contextmanager
def throwaway_database(stack: Stack, settings: Settings, tag: str = "") -> Iterator[str]:
    """A freshly migrated database, dropped afterwards (the external one, if configured)."""
    if stack.settings.external_database:
        url = stack.database_url()
        migrate(url)
        yield url
        return
    name = f"beffroi_test_{tag}{os.getpid()}_{secrets.token_hex(3)}"
    stack.ensure_database(name)
    url = stack.database_url(name)
    migrate(url)
    try:
        yield url
    finally:
        if not os.environ.get("BEFFROI_KEEP_TEST_DB"):
            stack.drop_database(name)


@pytest.fixture(scope="session")
def db_url(stack: Stack, settings: Settings) -> Iterator[str]:
    """A throwaway database shared by the test session."""
    with throwaway_database(stack, settings) as url:
        yield url


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the test database."""
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c


@pytest.fixture
def uid(request: pytest.FixtureRequest) -> str:
    """A short id unique to this test, for device ids and topics."""
    return f"t{secrets.token_hex(4)}"
