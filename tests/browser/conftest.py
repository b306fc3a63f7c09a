"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against the real
API (uvicorn, in a thread) on a database of its own, filled through the real broker and a
real ``beffroi ingest`` process with a tiny city's simulated day, the DST day 2026-10-25.

Each test gets a fresh browser context that records console errors (a test fails on any),
and leaves a screenshot under ``test-output/browser/`` (``BEFFROI_TEST_OUTPUT``).
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    expect,
    sync_playwright,
)
from pydantic import SecretStr

from api.runs import BrokerTarget, RunManager
from api.tokens import create_token
from beffroi.settings import Settings
from beffroi.stack import Stack
from devices import store
from devices.registry import RegistryFile, parse_registry
from simulators.model import TABLE_OF_KIND
from simulators.scenario import Scenario
from simulators.stream import Simulation
from tests.conftest import random_tag, throwaway_database
from tests.integration.ingest_helpers import IngestProcess
from tests.integration.mqtt_helpers import count, publish_fast, wait_until
from tests.unit.test_sim_stream import tiny_city

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
#: Chromium draws <input type=date> in the language of its process (LANG, with Debian's
#: chromium-l10n), not the page's: French, 25/10/2026, as the city's staff see it.
CHROMIUM_ENV = {"LANG": "fr_FR.UTF-8", "LANGUAGE": "fr"}
AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
DST_DAY = "2026-10-25"  # a Sunday: parking is free
WEEKDAY = "2026-10-27"  # a Tuesday morning, for payments
NATIVE = {"wifi_ap": {"native": 1.0}, "parking_spot": {"native": 1.0},
          "parking_meter": {"native": 1.0}, "grid_meter": {"native": 1.0}}
# Where the tiny city stands (Arras): the overview's map needs coordinates.
COORDS = {"sq": (50.29195, 2.78063), "pz": (50.28667, 2.78185), "dist": (50.2798, 2.7906)}


def output_dir() -> Path:
    """Where screenshots go."""
    d = Path(os.environ.get("BEFFROI_TEST_OUTPUT", "test-output")) / "browser"
    d.mkdir(parents=True, exist_ok=True)
    return d


def city(prefix: str) -> RegistryFile:
    """The tiny city of the simulator tests, placed on the map."""
    reg = tiny_city(prefix=prefix)
    raw = {"sites": [s.model_dump(mode="json") for s in reg.sites],
           "devices": [d.model_dump(mode="json") for d in reg.devices]}
    for s in raw["sites"]:
        s["latitude"], s["longitude"] = COORDS[s["id"].removeprefix(prefix)]
    return parse_registry(raw)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ApiServer:
    """The real application under uvicorn, in a thread of the test process."""

    def __init__(self, app: Any) -> None:
        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                   log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ApiServer:
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive(), timeout=30,
                   what="the API server to start")
        assert self.server.started, "the API server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@dataclass
class Dash:
    """Everything a dashboard test needs."""

    base: str
    db_url: str
    prefix: str  # sites and devices
    topic_prefix: str  # what the ingestor reads
    tokens: dict[str, str]
    stack: Stack
    registry: RegistryFile
    expected: Counter[str] = field(default_factory=Counter)

    def site(self, short: str) -> str:
        return f"{self.prefix}{short}"

    def api(self, path: str, token: str = "operate", **params: Any) -> Any:
        r = httpx.get(f"{self.base}{path}", params=params,
                      headers={"Authorization": f"Bearer {self.tokens[token]}"}, timeout=30)
        r.raise_for_status()
        return r.json()

    def link(self, token: str = "operate") -> str:
        r = httpx.post(f"{self.base}/v1/dashboard/links",
                       headers={"Authorization": f"Bearer {self.tokens[token]}"}, timeout=30)
        assert r.status_code == 201, r.text
        return f"{self.base}{r.json()['path']}"


def _scenario(start: str, duration: str, seed: int) -> Scenario:
    return Scenario.model_validate({
        "name": "dash", "start": start, "duration": duration, "seed": seed, "speed": "max",
        "formats": NATIVE, "parking": {"arrivals_per_spot_hour": 3},
        "wifi": {"peak_visitors_per_ap_hour": 40}})


def _write_run_scenarios(d: Path, reg: RegistryFile) -> None:
    city_file = d / "city.json"
    city_file.write_text(json.dumps({
        "sites": [s.model_dump(mode="json") for s in reg.sites],
        "devices": [x.model_dump(mode="json") for x in reg.devices]}), encoding="utf-8")
    (d / "slow.yaml").write_text(
        f"description: a day of the tiny city, slowly\ncity: {json.dumps(str(city_file))}\n"
        "seed: 3\nstart: yesterday 00:00\nduration: 1d\nspeed: 60\n", encoding="utf-8")


def _a_payment_and_a_fault(reg: RegistryFile, topic_prefix: str,
                           uid: str) -> list[tuple[str, bytes]]:
    """A payment and a meter fault of the weekday morning, whatever the simulation drew:
    its few payments a morning come from random streams keyed by the (random) zone id, and
    a run drew none, leaving the revenue and faults charts rightly empty. Off the minute,
    so that no simulated status of the same instant conflicts with the fault."""
    meter = next(d.id for d in reg.devices if d.family == "parking_meter")
    pay = {"ts": f"{WEEKDAY}T09:05:13+01:00", "transaction_id": f"{uid}-pay",
           "amount_cents": 250, "duration_s": 3600, "payment_method": "card"}
    fault = {"ts": f"{WEEKDAY}T09:07:13+01:00", "battery": 0.8, "paper": 0.4,
             "fault": "paper_jam"}
    return [(f"{topic_prefix}/parking/{meter}/transaction", json.dumps(pay).encode()),
            (f"{topic_prefix}/parking/{meter}/status", json.dumps(fault).encode())]


@pytest.fixture(scope="module")
def dash(stack: Stack, settings: Settings,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dash]:
    """A database with the tiny city's DST day ingested through broker and ingestor, and the
    API serving the dashboard on a free port."""
    from api.main import create_app

    uid = random_tag("d")
    prefix = f"{uid}-"
    reg = city(prefix)
    work = tmp_path_factory.mktemp("dashboard")
    with throwaway_database(stack, settings, tag="dash") as db_url:
        tokens: dict[str, str] = {}
        with psycopg.connect(db_url) as conn:
            store.import_registry(conn, reg)
            for name, scopes in (("read", ["read"]), ("operate", ["read", "operate"])):
                tokens[name], _ = create_token(conn, f"{uid}-{name}", scopes)
        ingest = IngestProcess(stack, db_url, work / "ingest.log")
        ingest.start()
        try:
            msgs = [m for start, length, seed in ((f"{DST_DAY} 00:00", "25h", 7),
                                                  (f"{WEEKDAY} 08:00", "4h", 8))
                    for m in Simulation(_scenario(start, length, seed), reg,
                                        prefix=ingest.prefix).messages()
                    if m.fault is None]
            sure = _a_payment_and_a_fault(reg, ingest.prefix, uid)
            publish_fast(stack, [*((m.topic, m.payload) for m in msgs), *sure])
            # One row per device and time (two messages of a device in the same instant
            # make one row); wifi session messages carry several events and are not counted.
            expected = Counter(table for table, _dev, _ts in {
                (TABLE_OF_KIND[m.kind], m.device_id, json.loads(m.payload).get("ts"))
                for m in msgs if m.kind and m.kind != "wifi/sessions"})
            expected.update(["parking_transactions", "parking_meter_status"])
            ids = [d.id for d in reg.devices]

            def ingested() -> bool:
                return all(count(db_url, table, "device_id = ANY(%s)", (ids,)) >= n
                           for table, n in expected.items())

            try:
                wait_until(ingested, timeout=120, what="the DST day ingested", interval=0.5)
            except AssertionError:
                got = {t: count(db_url, t, "device_id = ANY(%s)", (ids,)) for t in expected}
                raise AssertionError(f"ingested {got}, expected {dict(expected)}") from None
            runs_dir = work / "scenarios"
            runs_dir.mkdir()
            _write_run_scenarios(runs_dir, reg)
            host, port = stack.broker_address()
            user, password = stack.mqtt_credentials("admin")
            # api_token_cache_s 0: a revoked token is refused at its next request, so the
            # page's reaction to it shows at once (the delay the default allows is
            # tests/integration/test_api_tokens.py's).
            app_settings = settings.model_copy(update={
                "database_url": SecretStr(db_url), "ingest_metrics_port": 0,
                "api_token_cache_s": 0.0})
            app = create_app(app_settings)
            app.state.runs = RunManager(BrokerTarget(host, port, user, password, f"r{uid}"),
                                        scenario_dir=runs_dir, database_url=db_url,
                                        max_active=2, progress_s=0.2)
            with ApiServer(app) as server:
                yield Dash(server.base, db_url, prefix, ingest.prefix, tokens, stack, reg,
                           expected)
        finally:
            ingest.stop()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Playwright, driving Debian's chromium (browser downloads are impossible here).
    Module-scoped: while it runs, the sync API keeps an event loop running in the main
    thread, which other modules' ``asyncio.run`` must not meet."""
    if not CHROMIUM.exists():
        pytest.fail("the browser tests need Debian's chromium: run `make browser-deps` "
                    "(sudo bash beffroi/stack/install-browser.sh)")
    # Deadlines of the page's assertions and waits: generous, since the page, the API, the
    # database and the browser share two cores with the rest of the suite.
    expect.set_options(timeout=20_000)
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    b = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                   env={**os.environ, **CHROMIUM_ENV})
    yield b
    b.close()


@dataclass
class Tab:
    """A page and what its console said."""

    page: Page
    errors: list[str]
    #: HTTP error statuses the test provokes on purpose: Chromium logs each failed request
    #: as a console error ("Failed to load resource"), which is then expected.
    expected_statuses: set[int] = field(default_factory=set)

    def goto(self, dash: Dash, route: str) -> None:
        self.page.goto(f"{dash.base}/#/{route}")

    def sign_in(self, dash: Dash, token: str = "operate") -> None:
        self.page.goto(dash.link(token))
        self.page.wait_for_url(re.compile(r".*#/ville.*"), timeout=20_000)
        self.page.wait_for_selector("#ov-updated:not(:empty)", timeout=30_000)


@pytest.fixture
def tab(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Tab]:
    """A fresh context (its own sessionStorage) in a time zone far from the city's: every
    time shown must still be the city's. Fails the test on any console error; saves a
    screenshot."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000},
                              timezone_id="America/New_York", locale="fr-FR",
                              accept_downloads=True)
    page = ctx.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []

    def on_console(m: ConsoleMessage) -> None:
        if m.type == "error":
            errors.append(f"{m.text} ({m.location.get('url')})")

    page.on("console", on_console)
    page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
    t = Tab(page, errors)
    yield t
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    try:
        page.screenshot(path=str(output_dir() / f"{name}.png"), full_page=True)
    finally:
        ctx.close()
    unexpected = [e for e in errors if not any(
        f"status of {code} " in e and e.startswith("Failed to load resource")
        for code in t.expected_statuses)]
    assert not unexpected, f"console errors: {unexpected}"


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations of WCAG 2.1 A/AA on the page."""
    page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {runOnly: {type: 'tag',
            values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}});
        return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}));
    }""")
    return [v for v in result if v["impact"] in ("serious", "critical")]
