"""The production path, natively: what docker-compose.yml runs, without Docker.

The wheel is built as the Dockerfile builds it and installed from the lock file into a fresh
virtual environment outside the checkout; Beffroi connects to the database as the role the
compose database's init script creates (not a superuser) and to a Mosquitto started with
deploy/mosquitto/'s configuration and the accounts ``beffroi devices credentials --export``
writes there. ``migrate``, ``ingest --workers 2`` and ``api --host 0.0.0.0`` run as the
compose services do; a device and a ChirpStack bridge publish, the readings are read back
through the API and the ingestor's metrics scraped. tests/production_plan.py states the
steps once; tests/unit/test_deploy_files.py checks the compose file and the Dockerfile
against it.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from beffroi.stack import Stack
from beffroi.stack.install import dynsec_plugin
from beffroi.stack.process import chown_tree, service_user
from ingest.hotpath import COMPILED_MODULES
from tests import production_plan as plan

pytestmark = [pytest.mark.stack, pytest.mark.slow]

SYSTEM_PYTHON = Path("/usr/bin/python3")
DEADLINE_S = 60.0


def _free_ports(n: int = 1) -> int:
    """The first of ``n`` consecutive free ports."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            first: int = s.getsockname()[1]
        if first + n > 65535:
            continue
        ok = True
        for port in range(first, first + n):
            with socket.socket() as s:
                try:
                    s.bind(("0.0.0.0", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return first
    raise RuntimeError("no free ports")


def _wait(cond: Callable[[], Any], what: str, timeout: float = DEADLINE_S,
          logs: Sequence[Path] = ()) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.2)
    tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs
                      if p.exists())
    raise AssertionError(f"timed out waiting for {what}\n{tails}")


def _run(argv: Sequence[str | Path], *, env: dict[str, str] | None = None,
         cwd: Path | None = None, timeout: float = 300) -> str:
    out = subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=env,
                         cwd=cwd, timeout=timeout, check=False)
    assert out.returncode == 0, f"{argv} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    return out.stdout


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


# -- the installation ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``beffroi`` of the wheel, in a fresh virtual environment outside the checkout."""
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == plan.PYTHON
    work = tmp_path_factory.mktemp("production")
    assert plan.ROOT not in work.parents
    src = work / "src"
    src.mkdir()
    for name in plan.IMAGE_SOURCES:  # the Dockerfile's COPY lines
        source = plan.ROOT / name
        if source.is_dir():
            # links stay links, as Docker's COPY keeps them (beffroi/migrations -> ../sql)
            shutil.copytree(source, src / name, symlinks=True,
                            ignore=shutil.ignore_patterns(*plan.BUILD_IGNORED))
        else:
            shutil.copy2(source, src / name)
    # The build stage: the locked build backend (make venv installed it), then the wheel.
    build_python = Path(sys.executable)
    _run([build_python, "-m", "pip", *plan.PIP_BUILD_BACKEND[:3],
          plan.ROOT / plan.PIP_BUILD_BACKEND[3], "-q"])
    dist = work / "dist"
    _run([build_python, "-m", "pip", *plan.PIP_WHEEL, "--wheel-dir", dist, "-q", src],
         cwd=work)
    wheels = list(dist.glob("beffroi-*.whl"))
    assert len(wheels) == 1, wheels
    # The runtime stage: a fresh environment, the locked dependencies, then the wheel.
    venv = work / "venv"
    _run([SYSTEM_PYTHON, "-m", "venv", venv])
    pip: list[str | Path] = [venv / "bin" / "python", "-m", "pip"]
    _run([*pip, *plan.PIP_DEPENDENCIES[:3], plan.ROOT / plan.PIP_DEPENDENCIES[3], "-q"])
    _run([*pip, *plan.PIP_PACKAGE, wheels[0], "-q"])
    beffroi = venv / "bin" / plan.ENTRYPOINT[0]
    assert beffroi.exists()
    return beffroi


# -- the services -------------------------------------------------------------------------

class Services:
    """The database role, the broker and the Beffroi processes of one smoke run."""

    def __init__(self, stack: Stack, beffroi: Path, work: Path) -> None:
        self.stack = stack
        self.beffroi = beffroi
        self.work = work
        self.db = f"beffroi_prod_{secrets.token_hex(3)}"
        self.role = f"beffroi_prod_{secrets.token_hex(3)}"
        self.db_password = secrets.token_urlsafe(18)
        self.ingest_password = secrets.token_urlsafe(18)
        self.broker_port = _free_ports()
        self.metrics_port = _free_ports(2)
        self.api_port = _free_ports()
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.logs: list[Path] = []
        self.broker_dir: Path | None = None

    # The compose database: the image creates POSTGRES_DB, then runs the init script as
    # the superuser. The role name differs (this cluster's superuser is `beffroi`).
    def create_database(self) -> str:
        self.stack.ensure_database(self.db)
        su = conninfo_to_dict(self.stack.database_url(self.db))
        env = {"PATH": os.environ["PATH"], "POSTGRES_USER": str(su["user"]),
               "POSTGRES_DB": self.db, "BEFFROI_DB_USER": self.role,
               "BEFFROI_DB_PASSWORD": self.db_password, "PGHOST": str(su["host"]),
               "PGPORT": str(su["port"]), "PGPASSWORD": str(su["password"])}
        _run(["sh", plan.ROOT / plan.PG_INIT_SCRIPT], env=env)
        return (f"postgresql://{self.role}:{self.db_password}@127.0.0.1:{su['port']}/"
                f"{self.db}")

    def drop_database(self) -> None:
        with psycopg.connect(self.stack.database_url("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(self.db)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(self.role)))

    def env(self, db_url: str) -> dict[str, str]:
        """The compose services' environment (and the test-only metrics port)."""
        return {"PATH": os.environ["PATH"], "HOME": str(self.work), "LANG": "C.UTF-8",
                "BEFFROI_DATABASE_URL": db_url,
                "BEFFROI_BROKER_URL": f"mqtt://127.0.0.1:{self.broker_port}",
                "BEFFROI_INGEST_MQTT_PASSWORD": self.ingest_password,
                "BEFFROI_INGEST_METRICS_PORT": str(self.metrics_port),
                **plan.FIXED_ENV}

    def beffroi_run(self, env: dict[str, str], *args: str) -> str:
        return _run([self.beffroi, *args], env=env, cwd=self.work)

    # The compose broker: deploy/mosquitto/mosquitto.conf, with the container's paths
    # mapped to this run's directories.
    def broker_config(self) -> tuple[Path, Path]:
        # Under /tmp itself: the broker's user cannot reach into pytest's directories.
        self.broker_dir = Path(tempfile.mkdtemp(prefix="beffroi-prod-mqtt-"))
        conf_dir, data_dir = self.broker_dir / "config", self.broker_dir / "data"
        conf_dir.mkdir()
        data_dir.mkdir()
        text = (plan.ROOT / plan.BROKER_CONFIG_SOURCE / "mosquitto.conf").read_text()
        plugin = dynsec_plugin()
        assert plugin is not None
        for old, new in ((plan.DYNSEC_PLUGIN, str(plugin)),
                         (plan.BROKER_CONFIG_DIR, str(conf_dir)),
                         (plan.BROKER_DATA_DIR, str(data_dir)),
                         (f"listener {plan.BROKER_PORT}\n",
                          f"listener {self.broker_port} 127.0.0.1\n")):
            assert old in text, old
            text = text.replace(old, new)
        (conf_dir / "mosquitto.conf").write_text(text)
        return conf_dir, data_dir

    def start_broker(self, conf_dir: Path, data_dir: Path) -> None:
        # The image runs the broker as its own user, owner of the exported files.
        user = service_user("mosquitto")
        chown_tree(conf_dir.parent, user)
        self.spawn("mosquitto", [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c",
                                 str(conf_dir / "mosquitto.conf")], env=None)
        _wait(lambda: _port_open(self.broker_port), "the broker", logs=self.logs)

    def spawn(self, name: str, argv: Sequence[str | Path],
              env: dict[str, str] | None) -> subprocess.Popen[bytes]:
        log = self.work / f"{name}.log"
        self.logs.append(log)
        with log.open("wb") as fh:
            proc = subprocess.Popen([str(a) for a in argv], env=env, cwd=self.work,
                                    stdout=fh, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def stop_all(self) -> None:
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _name, proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _publish(port: int, user: str, password: str, topic: str, payload: str) -> None:
    """Publish one QoS 1 message as ``user`` (client id = user name); wait for its PUBACK."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=user, protocol=mqtt.MQTTv5)
    client.username_pw_set(user, password)
    connected, acked = threading.Event(), threading.Event()
    codes: list[Any] = []

    def on_connect(c: Any, u: Any, f: Any, rc: Any, p: Any) -> None:
        codes.append(rc)
        connected.set()

    client.on_connect = on_connect
    client.on_publish = lambda c, u, mid, rc, p: acked.set()
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    try:
        assert connected.wait(10) and not codes[0].is_failure, (user, codes)
        client.publish(topic, payload, qos=1)
        assert acked.wait(10), f"no PUBACK for {topic}"
    finally:
        client.loop_stop()
        client.disconnect()


def _registry(path: Path, uid: str) -> tuple[str, str, str, str]:
    zone, spot, lora = f"zone-{uid}", f"spot-{uid}", f"lora-{uid}"
    dev_eui = secrets.token_hex(8)
    site = {"id": zone, "kind": "parking_zone", "name": "Zone", "insee": "62041",
            "capacity": 2}
    devices = [{"id": spot, "family": "parking_spot", "site_id": zone, "name": "Spot"},
               {"id": lora, "family": "parking_spot", "site_id": zone, "name": "LoRa spot",
                "dev_eui": dev_eui}]
    path.write_text(json.dumps({"sites": [site], "devices": devices}))
    return zone, spot, lora, dev_eui


def _passwords(path: Path) -> dict[str, str]:
    with path.open(newline="") as fh:
        return {r["username"]: r["password"] for r in csv.DictReader(fh)}


@pytest.fixture
def services(stack: Stack, installed: Path, tmp_path: Path) -> Iterator[Services]:
    s = Services(stack, installed, tmp_path)
    try:
        yield s
    finally:
        s.stop_all()
        s.drop_database()
        if s.broker_dir is not None:
            shutil.rmtree(s.broker_dir, ignore_errors=True)


def test_the_wheel_runs_the_compiled_per_message_path(installed: Path) -> None:
    """The image's wheel carries the C extensions of setup.py, not the sources alone."""
    python = installed.parent / "python"
    out = _run([python, "-c", "from ingest import hotpath; print(hotpath.compiled())"],
               cwd=installed.parent)
    assert out.strip() == repr(list(COMPILED_MODULES))


def test_the_compose_path_runs_natively(services: Services, uid: str) -> None:
    s = services
    db_url = s.create_database()
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        assert row.fetchone() == (False,)
        for name, value in plan.PG_SETTINGS.items():
            assert conn.execute(f"SHOW {name}").fetchone() == (value,)
    env = s.env(db_url)

    # migrate (the `migrate` service): every migration of the wheel, as Beffroi's role
    out = s.beffroi_run(env, *plan.COMMANDS["migrate"])
    applied = [line for line in out.splitlines() if line.startswith("applied ")]
    assert applied and applied[0] == "applied 001_registry.sql", out
    assert s.beffroi_run(env, *plan.COMMANDS["migrate"]).strip() == "database is up to date"

    # the registry and the broker accounts, exported where the broker's config is
    zone, spot, lora, dev_eui = _registry(s.work / "registry.json", uid)
    s.beffroi_run(env, "devices", "import", str(s.work / "registry.json"))
    conf_dir, data_dir = s.broker_config()
    s.beffroi_run(env, "devices", "credentials", "generate", spot, "--export", str(conf_dir),
                  "--output", str(s.work / "devices.csv"))
    s.beffroi_run(env, "devices", "credentials", "generate", "--bridge", "chirpstack",
                  "--export", str(conf_dir), "--output", str(s.work / "bridges.csv"))
    passwords = _passwords(s.work / "devices.csv") | _passwords(s.work / "bridges.csv")
    s.start_broker(conf_dir, data_dir)

    # the ingest and api services
    ingest = s.spawn("ingest", [s.beffroi, *plan.COMMANDS["ingest"]], env)
    api_argv = [a if a != plan.API_PORT else str(s.api_port) for a in plan.COMMANDS["api"]]
    s.spawn("api", [s.beffroi, *api_argv], env)
    # listening on every address: reachable on 127.0.0.2 too, not only on 127.0.0.1
    for port in (s.metrics_port, s.metrics_port + 1, s.api_port):
        _wait(functools.partial(_port_open, port, "127.0.0.2"), f"port {port} on 0.0.0.0",
              logs=s.logs)
    _wait(lambda: _get(f"http://127.0.0.2:{s.api_port}/ready")[0] == 200, "API ready",
          logs=s.logs)

    def connected_workers() -> int:
        total = 0
        for port in (s.metrics_port, s.metrics_port + 1):
            status, body = _get(f"http://127.0.0.2:{port}/metrics")
            if status == 200 and b"beffroi_ingest_broker_connected 1.0" in body:
                total += 1
        return total

    _wait(lambda: connected_workers() == 2, "two ingestor workers connected", logs=s.logs)

    # a device and the ChirpStack bridge publish with their own accounts
    _publish(s.broker_port, spot, passwords[spot], f"city/parking/{spot}/state",
             json.dumps({"state": "occupied"}))
    uplink = {"deviceInfo": {"devEui": dev_eui, "deviceName": lora},
              "object": {"occupied": True}}
    _publish(s.broker_port, "chirpstack", passwords["chirpstack"],
             f"application/city/device/{dev_eui}/event/up", json.dumps(uplink))

    # read back through the API
    token = s.beffroi_run(env, "tokens", "create", "--name", "smoke", "--scope",
                          "read").strip()

    def current() -> dict[str, Any] | None:
        status, body = _get(f"http://127.0.0.2:{s.api_port}/v1/parking/zones/{zone}/current", token)
        doc: dict[str, Any] = json.loads(body) if status == 200 else {}
        return doc if doc.get("occupied") == 2 else None

    doc = _wait(current, "both readings through the API", logs=s.logs)
    assert doc == {"zone": zone, "capacity": 2, "sensors": 2, "free": 0, "occupied": 2,
                   "unknown": 0}
    # a series: the metric functions (sql/metrics/, shipped in the wheel) are in place
    day = datetime.now(UTC).date() - timedelta(days=2)
    status, body = _get(f"http://127.0.0.2:{s.api_port}/v1/parking/zones/{zone}/revenue"
                        f"?from={day}&to={day + timedelta(days=1)}&bucket=1d", token)
    assert status == 200, body
    assert json.loads(body)["data"][0]["transactions"] == 0, body

    # the metrics: both messages stored, counted by the workers that took them
    def stored() -> float:
        total = 0.0
        for port in (s.metrics_port, s.metrics_port + 1):
            _status, body = _get(f"http://127.0.0.2:{port}/metrics")
            for line in body.decode().splitlines():
                if line.startswith('beffroi_ingest_readings_written_total{table="parking_spot_'
                                   'state"}'):
                    total += float(line.split()[-1])
        return total

    assert _wait(lambda: stored() == 2.0, "metrics counting both readings", logs=s.logs)
    assert ingest.poll() is None
