"""Operator runs: scenarios published to the broker from the API, one child process each.

A run is ``python -m api.runworker`` (see that module): the simulator's own generator and
publisher in a process of its own, so that publishing at full speed never takes the API's
CPU time (the GIL) and a stuck run can always be killed. The child reads its spec (broker
password included) on stdin and writes JSON progress lines on stdout; a reader thread here
folds them into the run's state. Stopping is SIGTERM (the child stops publishing, waits a
few seconds for the broker's acknowledgements and reports its final counts), then SIGKILL
if it does not end in time. A child also stops when its stdin closes, i.e. when the API
process goes away.

Runs live in memory: the list is lost when the API restarts (the messages are not).
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import signal
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from api.runworker import POOL_SIZE
from beffroi import endpoints
from beffroi.settings import Settings
from simulators.scenario import (
    SCENARIO_DIR,
    Scenario,
    ScenarioError,
    load_scenario,
    parse_duration,
    resolve_start,
)

log = logging.getLogger(__name__)

State = Literal["starting", "running", "finished", "failed", "stopped"]
ACTIVE: tuple[State, ...] = ("starting", "running")

MAX_DURATION_S = 31 * 86400  # a month of simulated time per run
MAX_SPEED = 100_000.0
STOP_TIMEOUT_S = 15.0  # SIGTERM, then SIGKILL: the child drains acknowledgements for 5 s


class RunConflict(Exception):
    """Too many runs at once, or the run is not running any more."""


class RunNotFound(Exception):
    """No run with this id (or no scenario with this name)."""


@dataclass
class Run:
    """One run; mutated by its reader thread under the manager's lock."""

    id: str
    scenario: str
    speed: float | None  # None = as fast as possible
    duration_s: int
    seed: int
    requested_start: str | None
    started_at: datetime
    state: State = "starting"
    sim_start: datetime | None = None
    sim_end: datetime | None = None
    devices: int | None = None
    sent: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    offset_s: float = 0.0
    rate: float = 0.0
    acked: int | None = None
    unacked: int | None = None
    finished_at: datetime | None = None
    error: str | None = None
    stop_requested: bool = False
    slot: int = field(default=0, repr=False)  # which simulator accounts it publishes with
    proc: subprocess.Popen[str] | None = field(default=None, repr=False)
    ended: threading.Event = field(default_factory=threading.Event, repr=False)
    log_tail: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=20), repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The run as the API shows it."""
        clock = (self.sim_start + timedelta(seconds=self.offset_s)
                 if self.sim_start is not None else None)
        return {
            "id": self.id, "scenario": self.scenario, "state": self.state,
            "speed": "max" if self.speed is None else self.speed,
            "duration_s": self.duration_s, "seed": self.seed,
            "sim_start": _iso(self.sim_start), "sim_end": _iso(self.sim_end),
            "sim_clock": _iso(clock),
            "progress": round(min(1.0, self.offset_s / self.duration_s), 4)
            if self.duration_s else None,
            "devices": self.devices,
            "sent": dict(sorted(self.sent.items())), "sent_total": sum(self.sent.values()),
            "faults": dict(sorted(self.faults.items())),
            "rate": self.rate, "acked": self.acked, "unacked": self.unacked,
            "started_at": _iso(self.started_at), "finished_at": _iso(self.finished_at),
            "error": self.error,
        }


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


@dataclass(frozen=True)
class BrokerTarget:
    """Where runs publish, and as whom."""

    host: str
    port: int
    username: str
    password: str
    prefix: str


class RunManager:
    """Starts, tracks and stops runs; thread-safe."""

    def __init__(self, broker: BrokerTarget | None = None, *,
                 settings: Settings | None = None, scenario_dir: Path = SCENARIO_DIR,
                 database_url: str | None = None, max_active: int = 2, keep: int = 50,
                 progress_s: float = 0.5) -> None:
        self._broker = broker
        self._settings = settings
        self.scenario_dir = scenario_dir
        self.database_url = database_url
        self.max_active = max_active
        self.keep = keep
        self.progress_s = progress_s
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()
        self._scenario_cache: dict[Path, tuple[tuple[int, int], Scenario | ScenarioError]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> RunManager:
        """Publishing with the simulator's broker account (resolved at the first run)."""
        return cls(settings=settings)

    def broker(self) -> BrokerTarget:
        """The broker target; the simulator's account of the settings' stack by default."""
        if self._broker is None:
            assert self._settings is not None
            host, port = endpoints.broker_address(self._settings)
            user, password = endpoints.broker_credentials(self._settings, "sim")
            self._broker = BrokerTarget(host, port, user, password,
                                        self._settings.topic_prefix)
            if self.database_url is None:
                self.database_url = endpoints.database_url(self._settings)
        return self._broker

    # -- scenarios ------------------------------------------------------------------------
    def scenarios(self) -> dict[str, Scenario | ScenarioError]:
        """The named scenarios (``*.yaml`` of the scenario directory), or why one is invalid."""
        out: dict[str, Scenario | ScenarioError] = {}
        if not self.scenario_dir.is_dir():
            return out
        for path in sorted(self.scenario_dir.glob("*.yaml")):
            out[path.stem] = self._scenario_file(path)
        return out

    def _scenario_file(self, path: Path) -> Scenario | ScenarioError:
        """A scenario file as last read, read again when its size or time changes: parsing
        the YAML cost about 10 ms of CPU per listing, which 16 operators' pages queued."""
        try:
            st = path.stat()
        except OSError as exc:
            return ScenarioError(f"cannot read scenario {path}: {exc}")
        key = (st.st_mtime_ns, st.st_size)
        with self._lock:
            cached = self._scenario_cache.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            found: Scenario | ScenarioError = load_scenario(path)
        except ScenarioError as exc:
            found = exc
        with self._lock:
            self._scenario_cache[path] = (key, found)
        return found

    def scenario(self, name: str, *, speed: float | str | None = None,
                 duration: str | int | None = None, seed: int | None = None,
                 start: str | None = None) -> Scenario:
        """The named scenario with the overrides; ``RunNotFound``, or ``ValueError`` saying
        which override is wrong."""
        path = self.scenario_dir / f"{name}.yaml"
        if "/" in name or name.startswith(".") or not path.is_file():
            raise RunNotFound(name)
        found = self._scenario_file(path)  # parsed once per version of the file
        if isinstance(found, ScenarioError):
            raise ScenarioError(str(found))
        sc = found
        update: dict[str, Any] = {}
        if speed is not None:
            update["speed"] = speed
        if duration is not None:
            seconds = parse_duration(duration)
            if seconds > MAX_DURATION_S:
                raise ValueError(f"duration: at most {MAX_DURATION_S // 86400} days")
            update["duration"] = seconds
        if seed is not None:
            update["seed"] = seed
        if start is not None:
            resolve_start(start, now=datetime.now(UTC), tz=sc.tz)  # ValueError if invalid
            update["start"] = start
        if update:
            sc = Scenario.model_validate(sc.model_dump() | update)
        if sc.duration > MAX_DURATION_S:
            raise ValueError(f"duration: at most {MAX_DURATION_S // 86400} days")
        if isinstance(sc.speed, float) and sc.speed > MAX_SPEED:
            raise ValueError(f"speed: at most {MAX_SPEED:g} (or 'max')")
        return sc

    # -- runs -----------------------------------------------------------------------------
    def start(self, sc: Scenario) -> Run:
        """Start publishing ``sc``; ``RunConflict`` when ``max_active`` runs are active."""
        broker = self.broker()
        speed = None if sc.speed == "max" else float(sc.speed)
        with self._lock:
            active = [r for r in self._runs.values() if r.state in ACTIVE]
            if len(active) >= self.max_active:
                raise RunConflict(f"{len(active)} run(s) already active (at most "
                                  f"{self.max_active}): stop one first")
            # Each active run publishes with accounts of its own (the broker binds each
            # simulator account to one client id): the last ones, away from the CLI's first.
            slot = min(set(range(self.max_active)) - {r.slot for r in active})
            run = Run(id=uuid.uuid4().hex[:12], scenario=sc.name, speed=speed,
                      duration_s=sc.duration, seed=sc.seed, requested_start=sc.start,
                      started_at=datetime.now(UTC), slot=slot)
            sim_connections = (self._settings.sim_max_connections if self._settings
                               else Settings.model_fields["sim_max_connections"].default)
            spec = {"run_id": run.id, "scenario": sc.model_dump(mode="json"),
                    "speed": speed, "host": broker.host, "port": broker.port,
                    "username": broker.username, "password": broker.password,
                    "first_connection": max(0, sim_connections - (slot + 1) * POOL_SIZE),
                    "prefix": broker.prefix, "database_url": self.database_url,
                    "progress_s": self.progress_s}
            proc = subprocess.Popen(
                [sys.executable, "-m", "api.runworker"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
                start_new_session=True)
            run.proc = proc
            self._runs[run.id] = run
            self._prune()
        assert proc.stdin is not None
        try:
            proc.stdin.write(json.dumps(spec) + "\n")
            proc.stdin.flush()
        except OSError:
            pass  # the child died already: its reader reports the failure
        threading.Thread(target=self._read_stderr, args=(run,), daemon=True,
                         name=f"run-{run.id}-stderr").start()
        threading.Thread(target=self._read_stdout, args=(run,), daemon=True,
                         name=f"run-{run.id}").start()
        log.info("run %s: scenario %s started (pid %d)", run.id, sc.name, proc.pid)
        return run

    def _prune(self) -> None:
        done = [r for r in self._runs.values() if r.state not in ACTIVE]
        for r in done[: max(0, len(done) - self.keep)]:
            del self._runs[r.id]

    def _read_stderr(self, run: Run) -> None:
        assert run.proc is not None and run.proc.stderr is not None
        for line in run.proc.stderr:
            with self._lock:
                run.log_tail.append(line.rstrip()[:500])

    def _read_stdout(self, run: Run) -> None:
        proc = run.proc
        assert proc is not None and proc.stdout is not None
        final: dict[str, Any] | None = None
        error: str | None = None
        for line in proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                with self._lock:
                    run.log_tail.append(line.rstrip()[:500])
                continue
            kind = ev.get("event")
            with self._lock:
                if kind == "started":
                    run.state = "running"
                    run.sim_start = datetime.fromisoformat(ev["sim_start"])
                    run.sim_end = datetime.fromisoformat(ev["sim_end"])
                    run.devices = int(ev["devices"])
                elif kind in ("progress", "done"):
                    run.sent = {k: int(v) for k, v in ev["sent"].items()}
                    run.faults = {k: int(v) for k, v in ev["faults"].items()}
                    run.offset_s = float(ev["offset_s"])
                    run.rate = float(ev["rate"])
                    if kind == "done":
                        final = ev
                        run.acked, run.unacked = int(ev["acked"]), int(ev["unacked"])
                elif kind == "error":
                    error = str(ev.get("message"))
        code = proc.wait()
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()
        with self._lock:
            run.finished_at = datetime.now(UTC)
            if final is not None and (final["interrupted"] or run.stop_requested):
                run.state = "stopped"
            elif final is not None and code == 0:
                run.state = "finished"
            elif run.stop_requested and error is None:
                run.state = "stopped"  # killed after the stop timeout
            else:
                run.state = "failed"
                tail = "; ".join(list(run.log_tail)[-3:])
                run.error = error or f"run process exited with status {code}" + (
                    f": {tail}" if tail else "")
            log.info("run %s: %s", run.id, run.state)
        run.ended.set()

    def get(self, run_id: str) -> dict[str, Any]:
        """A run's state; ``RunNotFound``."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                raise RunNotFound(run_id)
            return run.to_dict()

    def list(self) -> list[dict[str, Any]]:
        """Every run kept, most recent first."""
        with self._lock:
            return [r.to_dict() for r in sorted(self._runs.values(),
                                                 key=lambda r: r.started_at, reverse=True)]

    def stop(self, run_id: str, timeout: float = STOP_TIMEOUT_S) -> dict[str, Any]:
        """Stop a run and wait for its final counts; ``RunConflict`` if it is not active."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                raise RunNotFound(run_id)
            if run.state not in ACTIVE:
                raise RunConflict(f"run {run_id} is {run.state}")
            run.stop_requested = True
        self._terminate(run, timeout)
        return self.get(run_id)

    def _terminate(self, run: Run, timeout: float) -> None:
        proc = run.proc
        assert proc is not None
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        if not run.ended.wait(timeout):
            log.warning("run %s did not stop within %.0fs: killing it", run.id, timeout)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            run.ended.wait(10.0)

    def shutdown(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop every active run (the API is shutting down)."""
        with self._lock:
            active = [r for r in self._runs.values() if r.state in ACTIVE]
            for r in active:
                r.stop_requested = True
        threads = [threading.Thread(target=self._terminate, args=(r, timeout)) for r in active]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
