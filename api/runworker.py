"""The child process of an operator run: publishes one scenario, reports progress as JSON.

Started by :mod:`api.runs` as ``python -m api.runworker``. It reads one JSON line on stdin
(the run's spec, broker password included, so that no secret is in the command line), then
publishes with the simulator's own code (:class:`simulators.stream.Simulation`,
:func:`simulators.publisher.publish_stream`) and writes JSON lines on stdout:

- ``{"event": "started", "sim_start", "sim_end", "devices"}`` once connected;
- ``{"event": "progress", "sent": {family: n}, "faults", "offset_s", "rate"}`` at most
  every ``progress_s`` seconds;
- ``{"event": "done", "interrupted", "sent", "faults", "acked", "unacked", "offset_s"}``;
- ``{"event": "error", "message"}`` (exit status 1) when it cannot start.

It stops (and still reports ``done``, with ``interrupted: true``) on SIGTERM, or when its
stdin reaches end of file: the API process died or closed the pipe, so a run never outlives
the process that started it by more than the broker drain time.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from beffroi.broker_auth import CONNECTION_PLACEHOLDER
from devices.democity import DEMO_CITY_FILE
from devices.registry import RegistryFile, load_registry_file
from simulators.model import SimMessage
from simulators.publisher import Fleet, Router, accounts_for, publish_stream
from simulators.scenario import Scenario
from simulators.stream import Simulation

POOL_SIZE = 2


class Reporter:
    """Counts what goes to the broker and writes progress lines, thread-safe."""

    def __init__(self, out: TextIO, every_s: float) -> None:
        self.out = out
        self.every_s = every_s
        self.sent: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.offset = 0.0
        self.t0 = time.monotonic()
        self._next = self.t0 + every_s
        self._lock = threading.Lock()

    def emit(self, event: str, **fields: Any) -> None:
        """One JSON line."""
        with self._lock:
            self.out.write(json.dumps({"event": event, **fields}) + "\n")
            self.out.flush()

    def progress(self) -> None:
        """A progress line with the counts so far."""
        elapsed = max(1e-6, time.monotonic() - self.t0)
        self.emit("progress", sent=dict(self.sent), faults=dict(self.faults),
                  offset_s=self.offset, rate=round(sum(self.sent.values()) / elapsed, 1))

    def watch(self, messages: Iterable[SimMessage]) -> Iterator[SimMessage]:
        """``messages``, counted as they are handed to the publisher."""
        for m in messages:
            self.sent[m.family] += 1
            if m.fault:
                self.faults[m.fault] += 1
            self.offset = m.offset
            now = time.monotonic()
            if now >= self._next:
                self._next = now + self.every_s
                self.progress()
            yield m


def _registry(source: str, database_url: str | None) -> RegistryFile:
    if source == "registry":
        import psycopg

        from devices import store

        if not database_url:
            raise ValueError("the scenario reads the registry but no database is configured")
        with psycopg.connect(database_url, autocommit=True) as conn:
            return RegistryFile(store.list_sites(conn), store.list_devices(conn))
    return load_registry_file(DEMO_CITY_FILE if source == "demo" else Path(source))


def run(spec: dict[str, Any], stop: threading.Event, out: TextIO) -> int:
    """Publish the run described by ``spec``; 0 when done or stopped, 1 on a start error."""
    rep = Reporter(out, float(spec.get("progress_s", 0.5)))
    try:
        sc = Scenario.model_validate(spec["scenario"])
        sim = Simulation(sc, _registry(sc.city.source, spec.get("database_url")),
                         prefix=spec["prefix"], start=spec.get("start"))
        user = spec["username"]
        accounts = accounts_for(mode="pool", pool_size=POOL_SIZE, sim=(user, spec["password"]),
                                first=int(spec.get("first_connection", 0)))
        router = Router(mode="pool", pool_size=POOL_SIZE, prefix=spec["prefix"])
        # Per-connection accounts are bound to client id = user name; a single account (not
        # bound: the admin one in tests) gets client ids of this run's own.
        ids = (None if CONNECTION_PLACEHOLDER in user
               else {k: f"beffroi-run-{spec['run_id']}-{k}" for k in accounts})
        fleet = Fleet(spec["host"], int(spec["port"]), accounts, client_ids=ids)
        fleet.connect(timeout=10.0)
    except Exception as exc:  # everything that prevents the start is reported as is
        rep.emit("error", message=f"{type(exc).__name__}: {exc}")
        return 1
    rep.emit("started", sim_start=sim.window.start.isoformat(),
             sim_end=sim.window.end.isoformat(), devices=len(sim.device_ids))
    speed = spec.get("speed")
    try:
        stats = publish_stream(rep.watch(sim.messages()), fleet, router,
                               speed=None if speed is None else float(speed),
                               sim_start=sim.window.start, stop=stop, progress_s=3600.0,
                               drain_timeout=30.0)
    except Exception as exc:
        rep.emit("error", message=f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        fleet.close()
    rep.emit("done", interrupted=stats.interrupted, sent=dict(stats.sent),
             faults=dict(stats.faults), acked=stats.acked, unacked=stats.unacked_at_end,
             offset_s=stats.last_offset,
             rate=round(stats.total / max(1e-6, time.monotonic() - rep.t0), 1))
    return 0


def _watch_stdin(stop: threading.Event) -> None:
    try:
        while sys.stdin.readline():
            pass
    except (OSError, ValueError):
        pass
    stop.set()


def main() -> int:
    """Entry point of ``python -m api.runworker``."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    line = sys.stdin.readline()
    try:
        spec = json.loads(line)
    except ValueError:
        print(json.dumps({"event": "error", "message": "no run spec on stdin"}), flush=True)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threading.Thread(target=_watch_stdin, args=(stop,), daemon=True).start()
    return run(spec, stop, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
