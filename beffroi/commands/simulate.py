"""``beffroi simulate list | record | truth | run | replay``: the city without the hardware."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from beffroi import endpoints
from beffroi.context import CommandError, Context
from devices.democity import DEMO_CITY_FILE
from devices.registry import RegistryFile, RegistryFileError, load_registry_file
from simulators.publisher import (
    Fleet,
    PublishError,
    Router,
    RunStats,
    accounts_for,
    progress_line,
    publish_stream,
)
from simulators.recording import RecordingError, read_recording, write_jsonl
from simulators.scenario import Scenario, ScenarioError, find_scenario, named_scenarios
from simulators.stream import Simulation
from simulators.truth import write_truth

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    """Add ``simulate`` and its subcommands."""
    p = sub.add_parser(
        "simulate", help="simulate the city's devices: run, record and replay scenarios",
        description="Scenarios drive simulated devices (see docs/simulators.md).")
    ss = p.add_subparsers(dest="simulate_command", required=True, metavar="ACTION")

    ls = ss.add_parser("list", help="the named scenarios shipped with Beffroi")
    ls.set_defaults(handler=_list)

    rec = ss.add_parser("record", help="write a scenario's message stream to a file (no broker)")
    _scenario_args(rec)
    rec.add_argument("-o", "--output", type=Path, required=True, metavar="FILE",
                     help="JSON Lines file ('-' for stdout)")
    rec.add_argument("--truth", type=Path, metavar="FILE", help="also write the ground truth")
    rec.set_defaults(handler=_record)

    tr = ss.add_parser("truth", help="write a scenario's ground truth (expected aggregates)")
    _scenario_args(tr)
    tr.add_argument("-o", "--output", type=Path, required=True, metavar="FILE")
    tr.set_defaults(handler=_truth)

    run = ss.add_parser("run", help="publish a scenario to the broker")
    _scenario_args(run)
    _publish_args(run)
    run.add_argument("--connections", choices=("pool", "per-device"), default="pool",
                     help="a few connections with the simulator account (default), or one per "
                     "device with its own credentials")
    run.add_argument("--credentials", type=Path, metavar="CSV",
                     help="per-device passwords (device_id,username,password), as written by "
                     "`beffroi devices credentials generate --output`")
    run.add_argument("--issue-credentials", action="store_true",
                     help="per-device: issue new credentials to the scenario's devices now "
                     "(replaces their passwords; local stack only)")
    run.add_argument("--follow-clock", action="store_true",
                     help="never publish a message before its simulated time: the part of "
                     "the scenario already past is played at --speed, the rest in real time "
                     "(use with --start today)")
    run.add_argument("--truth", type=Path, metavar="FILE", help="also write the ground truth")
    run.set_defaults(handler=_run)

    rp = ss.add_parser("replay", help="republish a recording or a mosquitto_sub -v capture")
    rp.add_argument("file", type=Path, metavar="FILE")
    _publish_args(rp)
    rp.add_argument("--rate", type=float, default=100.0,
                    help="messages/s for capture lines without times (default 100)")
    rp.set_defaults(handler=_replay)


def _scenario_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", metavar="SCENARIO", help="a named scenario or a .yaml file")
    p.add_argument("--seed", type=int, help="override the scenario's seed")
    p.add_argument("--start", metavar="WHEN",
                   help="override the start: '2025-11-18 07:00', 'yesterday 00:00', "
                   "'last saturday 07:00', 'now'")
    p.add_argument("--duration", metavar="D", help="override the duration: 90s, 15m, 2h, 1d")
    p.add_argument("--city", metavar="SOURCE",
                   help="override the city: 'demo', 'registry' or a registry file")


def _publish_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--speed", metavar="N",
                   help="1 = real time, N = N times faster, 'max' = as fast as possible "
                   "(default: the scenario's; 1 for replay)")
    p.add_argument("--qos", type=int, choices=(0, 1), help="override the QoS")
    p.add_argument("--pool-size", type=int, default=4,
                   help="connections in pool mode (accounts beffroi-sim-0..N-1)")
    p.add_argument("--progress", type=float, default=5.0, metavar="S",
                   help="seconds between progress lines")


# -- building a simulation -------------------------------------------------------------------

def _scenario(args: argparse.Namespace) -> Scenario:
    try:
        sc = find_scenario(args.scenario)
        update: dict[str, Any] = {}
        if args.seed is not None:
            update["seed"] = args.seed
        if args.duration is not None:
            update["duration"] = args.duration
        if args.city is not None:
            update["city"] = sc.city.model_copy(update={"source": args.city}).model_dump()
        if getattr(args, "qos", None) is not None:
            update["qos"] = args.qos
        if update:
            sc = Scenario.model_validate(sc.model_dump() | update)
    except ScenarioError as exc:
        raise CommandError(str(exc)) from exc
    except ValueError as exc:
        raise CommandError(f"invalid override: {exc}") from exc
    return sc


def _registry(ctx: Context, sc: Scenario) -> RegistryFile:
    source = sc.city.source
    if source == "registry":
        import psycopg

        from devices import store

        try:
            with psycopg.connect(ctx.database_url(), autocommit=True) as conn:
                return RegistryFile(store.list_sites(conn), store.list_devices(conn))
        except psycopg.Error as exc:
            raise CommandError(f"cannot read the registry from the database: {exc}") from exc
    path = DEMO_CITY_FILE if source == "demo" else Path(source)
    try:
        return load_registry_file(path)
    except RegistryFileError as exc:
        raise CommandError(str(exc)) from exc


def _simulation(ctx: Context, args: argparse.Namespace) -> Simulation:
    sc = _scenario(args)
    try:
        sim = Simulation(sc, _registry(ctx, sc), prefix=ctx.settings.topic_prefix,
                         start=args.start)
    except (ScenarioError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    log.info("%s", sim.describe())
    return sim


def _speed(value: str | None, default: float | None) -> float | None:
    if value is None:
        return default
    if value.strip().lower() in ("max", "fast", "asap"):
        return None
    try:
        speed = float(value.strip().lstrip("xX"))
    except ValueError:
        raise CommandError(f"--speed {value!r}: give a number or 'max'") from None
    if speed <= 0:
        raise CommandError("--speed must be positive")
    return speed


# -- handlers ---------------------------------------------------------------------------------

def _list(ctx: Context, args: argparse.Namespace) -> int:
    named = named_scenarios()
    if not named:
        print("no scenarios shipped")
        return 0
    width = max(len(n) for n in named)
    for name in named:
        try:
            sc = find_scenario(name)
        except ScenarioError as exc:
            print(f"{name:<{width}}  (invalid: {exc})")
            continue
        speed = sc.speed if sc.speed == "max" else f"x{sc.speed:g}"
        hours = sc.duration / 3600
        print(f"{name:<{width}}  {hours:g}h from {sc.start!r}, {speed}, seed {sc.seed}: "
              f"{sc.description}")
    return 0


@contextmanager
def _output(path: Path) -> Iterator[Any]:
    if str(path) == "-":
        yield sys.stdout
        return
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="\n") as fh:
            yield fh
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _record(ctx: Context, args: argparse.Namespace) -> int:
    sim = _simulation(ctx, args)
    with _output(args.output) as fh:
        n = write_jsonl(sim.messages(), fh)
    log.info("recorded %d messages to %s", n, args.output)
    if args.truth is not None:
        write_truth(sim.truth_document(), args.truth)
        log.info("wrote the ground truth to %s", args.truth)
    return 0


def _truth(ctx: Context, args: argparse.Namespace) -> int:
    sim = _simulation(ctx, args)
    doc = sim.truth_document()
    write_truth(doc, args.output)
    m = doc["messages"]
    print(f"wrote {args.output}: {m['clean']} clean messages, faults {json.dumps(m['faults'])}")
    return 0


def _stop_event() -> threading.Event:
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    return stop


def _device_passwords(ctx: Context, args: argparse.Namespace, sim: Simulation) -> dict[str, str]:
    wanted = set(sim.device_ids)
    if args.credentials is not None:
        try:
            with args.credentials.open(encoding="utf-8", newline="") as fh:
                rows = {r["device_id"]: r["password"] for r in csv.DictReader(fh)}
        except (OSError, KeyError) as exc:
            raise CommandError(f"cannot read {args.credentials} as a "
                               f"device_id,username,password CSV: {exc}") from exc
        missing = sorted(wanted - set(rows))
        if missing:
            raise CommandError(f"{len(missing)} simulated device(s) have no password in "
                               f"{args.credentials}, e.g. {', '.join(missing[:3])}")
        return {d: rows[d] for d in sorted(wanted)}
    if args.issue_credentials:
        import psycopg

        from devices import credentials as creds

        with psycopg.connect(ctx.database_url(), autocommit=True) as conn:
            change = creds.issue(conn, sorted(wanted), force=True)
            local = ctx.local_broker()
            if local is None:
                raise CommandError("--issue-credentials rewrites the development stack's "
                                   "broker accounts: use --credentials CSV elsewhere")
            local.write_broker_auth(creds.broker_accounts(
                conn, ctx.settings.topic_prefix, ctx.settings.bridge_prefix))
        for dev_id, reason in change.skipped[:5]:
            log.warning("no credentials for %s: %s", dev_id, reason)
        if change.skipped:
            raise CommandError(f"{len(change.skipped)} device(s) got no credentials: are they "
                               "in the registry (`beffroi devices import`)?")
        return {c.device_id: c.password for c in change.issued}
    raise CommandError("--connections per-device needs --credentials CSV or "
                       "--issue-credentials")


def _connect(fleet: Fleet, *, retry_s: float) -> None:
    deadline = time.monotonic() + retry_s
    while True:
        try:
            fleet.connect()
            return
        except PublishError as exc:
            if time.monotonic() >= deadline:
                raise CommandError(str(exc)) from exc
            log.info("%s; retrying (the broker may be reloading its accounts)", exc)
            time.sleep(1.0)


def _summary(stats: RunStats, elapsed: float) -> None:
    state = "interrupted" if stats.interrupted else "done"
    faults = ", ".join(f"{k} {v}" for k, v in sorted(stats.faults.items())) or "none"
    rate = stats.total / max(elapsed, 1e-6)
    print(f"{state}: {stats.total} messages in {elapsed:.1f}s ({rate:.0f} msg/s); "
          f"acknowledged {stats.acked}, unacknowledged {stats.unacked_at_end}; "
          f"per family: {', '.join(f'{f} {n}' for f, n in sorted(stats.sent.items()))}; "
          f"faults: {faults}", file=sys.stderr)


def _check_pool(ctx: Context, pool_size: int) -> None:
    """The local broker has ``sim_max_connections`` simulator accounts, one per connection."""
    most = ctx.settings.sim_max_connections
    if pool_size > most:
        raise CommandError(f"--pool-size {pool_size}: the local broker has accounts for {most} "
                           "simulator connections (BEFFROI_SIM_MAX_CONNECTIONS: raise it, then "
                           "export the accounts again or restart the development stack)")


def _publish(ctx: Context, args: argparse.Namespace, messages: Any, *, accounts: dict[
        str, tuple[str, str]], router: Router, speed: float | None, sim_start: Any,
        retry_s: float = 2.0, follow_clock: bool = False) -> RunStats:
    host, port = ctx.broker_address()
    fleet = Fleet(host, port, accounts)
    _connect(fleet, retry_s=retry_s)
    started = time.monotonic()
    try:
        stats = publish_stream(messages, fleet, router, speed=speed, sim_start=sim_start,
                               stop=_stop_event(), progress_s=args.progress,
                               follow_clock=follow_clock)
    finally:
        fleet.close()
    log.info("%s", progress_line(stats, sim_start))
    _summary(stats, time.monotonic() - started)
    return stats


def _run(ctx: Context, args: argparse.Namespace) -> int:
    sim = _simulation(ctx, args)
    sc = sim.scenario
    speed = _speed(args.speed, None if sc.speed == "max" else float(sc.speed))
    sim_user = endpoints.broker_credentials(ctx.client_settings, "sim")
    if args.connections == "per-device":
        passwords = _device_passwords(ctx, args, sim)
        accounts = accounts_for(mode="per-device", pool_size=1, sim=sim_user,
                                device_passwords=passwords)
        router = Router(mode="per-device", pool_size=1, prefix=ctx.settings.topic_prefix,
                        device_ids=passwords)
    else:
        _check_pool(ctx, args.pool_size)
        accounts = accounts_for(mode="pool", pool_size=args.pool_size, sim=sim_user)
        router = Router(mode="pool", pool_size=args.pool_size, prefix=ctx.settings.topic_prefix)
    stats = _publish(ctx, args, sim.messages(), accounts=accounts, router=router, speed=speed,
                     sim_start=sim.window.start,
                     retry_s=10.0 if args.issue_credentials else 2.0,
                     follow_clock=args.follow_clock)
    if args.truth is not None:
        if stats.interrupted:
            log.warning("run interrupted: no ground truth written")
        else:
            write_truth(sim.truth_document(), args.truth)
            log.info("wrote the ground truth to %s", args.truth)
    return 130 if stats.interrupted else 0


def _replay(ctx: Context, args: argparse.Namespace) -> int:
    if not args.file.is_file():
        raise CommandError(f"no file {args.file}")
    speed = _speed(args.speed, 1.0)
    qos = 1 if args.qos is None else args.qos
    messages = read_recording(args.file, qos=qos, rate=args.rate)
    if args.qos is not None:
        messages = (m.__class__(m.offset, m.topic, qos, m.payload, m.content_type)
                    for m in messages)
    _check_pool(ctx, args.pool_size)
    accounts = accounts_for(mode="pool", pool_size=args.pool_size,
                            sim=endpoints.broker_credentials(ctx.client_settings, "sim"))
    router = Router(mode="pool", pool_size=args.pool_size, prefix=ctx.settings.topic_prefix)
    try:
        stats = _publish(ctx, args, messages, accounts=accounts, router=router, speed=speed,
                         sim_start=None)
    except RecordingError as exc:
        raise CommandError(f"{args.file}: {exc}") from exc
    return 130 if stats.interrupted else 0
