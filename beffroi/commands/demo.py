"""``beffroi demo``: the whole thing on one machine, with the demo city."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any

import psycopg

from beffroi.context import CommandError, Context
from beffroi.migrate import migrate

log = logging.getLogger(__name__)


#: How long the broker keeps the demo ingestor's session once it stops (see below).
DEMO_SESSION_EXPIRY_S = 600


def register(sub: Any) -> None:
    """Add ``demo``."""
    p = sub.add_parser(
        "demo", help="start the stack, load the demo city, run ingestor, API and a scenario",
        description="Start the local stack, apply migrations, load the demo city (Arras: "
        "2 squares, 3 parking zones, 2 districts, 820 devices), then run the ingestor, the "
        "API and a simulator scenario. Runs until Ctrl-C (or --exit-after-scenario).")
    p.add_argument("--scenario", default="weekday",
                   help="simulator scenario to play (default: weekday)")
    p.add_argument("--speed", default="600", help="simulation speed factor (default: 600)")
    p.add_argument("--start", default="today 00:00",
                   help="when the scenario starts (default: today 00:00, local time). The part "
                   "already past is played at --speed, then the city follows the clock: wifi "
                   "sessions are per-client data, refused once their day is over")
    p.add_argument("--duration", default="1d", help="the scenario's duration (default: 1d)")
    p.add_argument("--api-port", type=int, default=8000)
    p.add_argument("--exit-after-scenario", action="store_true",
                   help="stop everything once the scenario has been played")
    p.set_defaults(handler=_demo)


def _beffroi(*args: str) -> list[str]:
    return [sys.executable, "-m", "beffroi.cli", *args]


def _demo(ctx: Context, args: argparse.Namespace) -> int:
    from devices.democity import DEMO_CITY_FILE
    from devices.registry import load_registry_file
    from devices.store import import_registry

    ctx.settings.dev_stack = True  # the demo is the development stack's
    for line in ctx.stack.up():
        print(line)
    url = ctx.database_url()
    applied = migrate(url)
    print(f"migrations: {len(applied)} applied" if applied else "migrations: up to date")
    with psycopg.connect(url) as conn:
        result = import_registry(conn, load_registry_file(DEMO_CITY_FILE))
    print(f"demo city loaded from {DEMO_CITY_FILE.name}: {result}")

    env = os.environ | {"BEFFROI_STATE_DIR": str(ctx.stack.state_dir),
                        "BEFFROI_DEV_STACK": "1"}
    # The demo's ingestor session outlives a stop by 10 minutes (a restart in between gets
    # what the broker kept), not 7 days: on a development machine the tests publish on the
    # same broker between two demos, and a week-long session would keep all of it for the
    # next demo to dead-letter (unknown devices). A deployment keeps its 7 days.
    env.setdefault("BEFFROI_INGEST_SESSION_EXPIRY_S", str(DEMO_SESSION_EXPIRY_S))
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def spawn(name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, env=env)
        procs.append((name, proc))
        return proc

    stopping = False

    def stop_all(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop_all)
    signal.signal(signal.SIGTERM, stop_all)
    try:
        spawn("ingestor", _beffroi("ingest", "--progress"))
        spawn("api", _beffroi("api", "--port", str(args.api_port)))
        sim_argv = ["simulate", "run", args.scenario, "--speed", str(args.speed),
                    "--start", args.start, "--duration", args.duration, "--follow-clock"]
        sim = spawn("simulator", _beffroi(*sim_argv))
        host, port = ctx.broker_address()
        api_base = f"http://127.0.0.1:{args.api_port}"
        link = _dashboard_link(url, api_base)
        print("\nBeffroi demo running:\n"
              f"  database   {ctx.stack.status()[0].where}\n"
              f"  broker     mqtt://{host}:{port}\n"
              f"  ingestor   metrics on http://127.0.0.1:{ctx.settings.ingest_metrics_port}/metrics\n"
              f"  API        {api_base}/docs\n"
              f"  dashboard  {api_base}/\n"
              f"  sign in    {link or 'the API did not answer: beffroi tokens create'}\n"
              "             (a one-time link, valid 5 minutes; the token itself never goes "
              "in an address)\n"
              f"  simulator  scenario {args.scenario} from {args.start}: the past at "
              f"x{args.speed}, then live\n"
              "Ctrl-C stops the ingestor, the API and the simulator (the stack keeps running; "
              "`beffroi stack down` stops it).\n", flush=True)
        while not stopping:
            if sim.poll() is not None:
                if sim.returncode != 0:
                    raise CommandError(f"the simulator failed (exit {sim.returncode})")
                if args.exit_after_scenario:
                    break
            for name, proc in procs:
                if name != "simulator" and proc.poll() is not None:
                    raise CommandError(f"the {name} stopped unexpectedly "
                                       f"(exit {proc.returncode})")
            time.sleep(0.5)
    finally:
        for _, proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time; killing it", name)
                proc.kill()
    return 0


DEMO_TOKEN = "demo-dashboard"


def _dashboard_link(db_url: str, api_base: str, timeout_s: float = 30.0) -> str | None:
    """A one-time sign-in link to the dashboard, for a fresh read + operate token of the
    demo (the previous demo token is revoked); None if the API does not come up."""
    from api.tokens import create_token, revoke_token

    with psycopg.connect(db_url) as conn:
        revoke_token(conn, name=DEMO_TOKEN)
        token, _ = create_token(conn, DEMO_TOKEN, ["read", "operate"])
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        req = urllib.request.Request(f"{api_base}/v1/dashboard/links",  # noqa: S310 (http)
                                     method="POST", headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=2) as r:  # noqa: S310
                return f"{api_base}{json.loads(r.read())['path']}"
        except OSError:
            time.sleep(0.5)
    return None
