"""``beffroi stack up | down | status | reset``: the whole local stack as one object."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from pydantic import SecretStr

from beffroi import broker_auth, endpoints
from beffroi.broker_auth import BrokerAccount
from beffroi.settings import Settings
from beffroi.stack import dynsec, install
from beffroi.stack.errors import StackError
from beffroi.stack.mosquitto import Mosquitto
from beffroi.stack.postgres import Postgres
from beffroi.stack.process import port_free, port_open, service_user, user_can_reach
from beffroi.stack.secrets import LocalSecrets, load_or_create

log = logging.getLogger(__name__)

SHARED_ROOT = Path("/var/lib/beffroi")
PORTS = frozenset({"pg_port", "mqtt_port"})
PORTS_FILE = "ports.json"


@dataclass(frozen=True)
class ServiceStatus:
    """One line of ``stack status``."""

    name: str
    running: bool
    pid: int | None
    where: str
    managed: bool


class Stack:
    """The local PostgreSQL + Mosquitto pair, or the external services that replace them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state_dir = settings.state_dir.resolve()
        self._secrets: LocalSecrets | None = None
        self._explicit_ports = frozenset(PORTS & settings.model_fields_set)
        self._apply_recorded_ports()

    def _apply_recorded_ports(self) -> None:
        """Take the ports recorded in ``<state_dir>/ports.json`` unless set explicitly."""
        try:
            recorded = json.loads((self.state_dir / PORTS_FILE).read_text())
        except (OSError, ValueError):
            return
        for name in PORTS - self._explicit_ports:
            if isinstance(recorded.get(name), int):
                setattr(self.settings, name, recorded[name])

    def port_is_explicit(self, name: str) -> bool:
        """True when ``pg_port`` / ``mqtt_port`` was set (environment, .env, argument)."""
        return name in self._explicit_ports

    # -- layout -------------------------------------------------------------------------
    @property
    def secrets(self) -> LocalSecrets:
        """Generated passwords of the local stack."""
        if self._secrets is None:
            self._secrets = load_or_create(self.state_dir)
        return self._secrets

    def services_root(self, user: str | None) -> Path:
        """Where service data lives: under the state dir, unless the service user can't reach it."""
        if user is None or user_can_reach(user, self.state_dir / "x"):
            return self.state_dir
        digest = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:12]
        return SHARED_ROOT / digest

    def _postgres(self, pg_bin: Path | None = None) -> Postgres:
        user = service_user("postgres")
        if pg_bin is None:
            major = install.pg_major_installed() or "15"
            pg_bin = install.PG_ROOT / major / "bin"
        root = self.services_root(user)
        return Postgres(pg_bin=pg_bin, data_dir=root / "postgres" / "data",
                        port=self.settings.pg_port, user=user,
                        password=self.secrets.pg_password,
                        timeout=self.settings.startup_timeout_s)

    def _mosquitto(self, binary: Path | None = None) -> Mosquitto:
        user = service_user("mosquitto")
        root = self.services_root(user)
        return Mosquitto(binary=binary or Path("/usr/sbin/mosquitto"), root=root / "mosquitto",
                         port=self.settings.mqtt_port, user=user,
                         timeout=self.settings.startup_timeout_s,
                         dynsec_plugin=install.dynsec_plugin())

    # -- commands -----------------------------------------------------------------------
    def up(self) -> list[str]:
        """Install what is missing, start what is not running, wait until both answer."""
        s = self.settings
        self.state_dir.mkdir(parents=True, exist_ok=True)
        done: list[str] = []
        if s.external_database and s.external_broker:
            return ["external database and broker in use; nothing to start"]
        bins = install.ensure_installed()
        if not s.external_database:
            pg = self._postgres(bins.pg_bin)
            if pg.pid() is None and self._moved_off_taken_port("pg_port", "PostgreSQL"):
                pg = self._postgres(bins.pg_bin)
            started = pg.start()
            self.ensure_database(s.db_name)
            done.append(("started" if started else "already running") +
                        f": PostgreSQL {bins.pg_major} + TimescaleDB on 127.0.0.1:{pg.port}")
        if not s.external_broker:
            mq = self._mosquitto(bins.mosquitto)
            if mq.pid() is None and self._moved_off_taken_port("mqtt_port", "Mosquitto"):
                mq = self._mosquitto(bins.mosquitto)
            if mq.pid() is None:
                mq.write_config()
                self.write_broker_auth(reload=False)
            started = mq.start()
            done.append(("started" if started else "already running") +
                        f": Mosquitto on 127.0.0.1:{mq.port}")
        return done

    def _moved_off_taken_port(self, name: str, what: str) -> bool:
        """When the port ``name`` (not set explicitly) is taken by another program, take a
        free one and record it for every later process; True if moved."""
        port: int = getattr(self.settings, name)
        if self.port_is_explicit(name) or not port_open("127.0.0.1", port):
            return False
        new = next((p for p in range(port + 1, min(port + 200, 65536)) if port_free(p)), None)
        if new is None:
            return False  # start() then says the port is taken
        path = self.state_dir / PORTS_FILE
        try:
            recorded = json.loads(path.read_text())
        except (OSError, ValueError):
            recorded = {}
        path.write_text(json.dumps({**recorded, name: new}) + "\n")
        setattr(self.settings, name, new)
        log.warning("port %d is taken by another program (another stack?): %s of this stack "
                    "uses %d, recorded in %s", port, what, new, path)
        return True

    def down(self) -> list[str]:
        """Stop exactly the processes this stack started."""
        out = []
        if not self.settings.external_broker and self._mosquitto().stop():
            out.append("stopped Mosquitto")
        if not self.settings.external_database and self._postgres().stop():
            out.append("stopped PostgreSQL")
        return out or ["nothing was running"]

    def status(self) -> list[ServiceStatus]:
        """What runs where."""
        s = self.settings
        out = []
        if s.external_database:
            out.append(ServiceStatus("postgresql", True, None, "external (BEFFROI_DATABASE_URL)",
                                     False))
        else:
            pg = self._postgres()
            out.append(ServiceStatus("postgresql", pg.pid() is not None, pg.pid(),
                                     f"127.0.0.1:{pg.port}, data {pg.data_dir}", True))
        if s.external_broker:
            out.append(ServiceStatus("mosquitto", True, None, f"external ({s.broker_url})", False))
        else:
            mq = self._mosquitto()
            out.append(ServiceStatus("mosquitto", mq.pid() is not None, mq.pid(),
                                     f"127.0.0.1:{mq.port}, config {mq.conf_file}", True))
        return out

    def reset(self) -> None:
        """Stop everything and delete the state directory (and any service data outside it)."""
        self.down()
        roots = {self.state_dir, self._postgres().data_dir.parent.parent,
                 self._mosquitto().root.parent}
        for root in roots:
            if root.exists():
                shutil.rmtree(root)
        self._secrets = None

    # -- helpers used by other commands ---------------------------------------------------
    def broker_address(self) -> tuple[str, int]:
        """Host and port of the broker in use (the external one, or the local one)."""
        if self.settings.broker_url is not None:
            return endpoints.broker_address(self.settings)
        return "127.0.0.1", self.settings.mqtt_port

    def client_settings(self) -> Settings:
        """The settings with every endpoint left unset taken from this stack: what the
        production code (ingestor, API, simulators) reads, see :mod:`beffroi.endpoints`."""
        s = self.settings
        update: dict[str, object] = {}
        if s.database_url is None:
            update["database_url"] = SecretStr(self.database_url())
        if s.broker_url is None:  # the local broker, with the stack's accounts
            update["broker_url"] = f"mqtt://127.0.0.1:{s.mqtt_port}"
            if s.ingest_mqtt_password is None:
                update["ingest_mqtt_password"] = SecretStr(self.mqtt_credentials("ingest")[1])
            if s.sim_mqtt_password is None:
                update["sim_mqtt_password"] = SecretStr(self.mqtt_credentials("sim")[1])
        return s.model_copy(update=update)

    def environment(self) -> dict[str, str]:
        """``BEFFROI_*`` variables giving a process this stack's endpoints and accounts."""
        c = self.client_settings()
        assert c.database_url and c.broker_url
        env = {"BEFFROI_DATABASE_URL": c.database_url.get_secret_value(),
               "BEFFROI_BROKER_URL": c.broker_url,
               "BEFFROI_INGEST_MQTT_USERNAME": c.ingest_mqtt_username,
               "BEFFROI_SIM_MQTT_USERNAME": c.sim_mqtt_username}
        if c.ingest_mqtt_password is not None:
            env["BEFFROI_INGEST_MQTT_PASSWORD"] = c.ingest_mqtt_password.get_secret_value()
        if c.sim_mqtt_password is not None:
            env["BEFFROI_SIM_MQTT_PASSWORD"] = c.sim_mqtt_password.get_secret_value()
        return env

    def database_url(self, db: str | None = None) -> str:
        """URL of the database in use (the external one, or ``db`` on the local cluster)."""
        if self.settings.database_url is not None:
            return self.settings.database_url.get_secret_value()
        return self._postgres().url(db or self.settings.db_name)

    def ensure_database(self, name: str) -> None:
        """Create database ``name`` on the local cluster unless it exists."""
        with psycopg.connect(self._postgres().url("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if exists.fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` on the local cluster (used by tests for throwaway databases)."""
        with psycopg.connect(self._postgres().url("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))

    def mqtt_credentials(self, role: str) -> tuple[str, str]:
        """User name and password of Beffroi's broker account ``ingest``, ``sim`` or ``admin``.

        The ingest and sim user names are templates: connection ``n`` replaces ``{n}`` (see
        ``broker_auth.connection_user``).
        """
        s = self.settings
        configured = {"ingest": s.ingest_mqtt_password, "sim": s.sim_mqtt_password}.get(role)
        if s.external_broker and configured is None:
            raise StackError(
                f"the broker is external: set BEFFROI_{role.upper()}_MQTT_PASSWORD "
                f"(and BEFFROI_{role.upper()}_MQTT_USERNAME) for Beffroi's {role} account")
        if role == "ingest":
            pw = s.ingest_mqtt_password
            return s.ingest_mqtt_username, (pw.get_secret_value() if pw else
                                            self.secrets.ingest_password)
        if role == "sim":
            pw = s.sim_mqtt_password
            return s.sim_mqtt_username, (pw.get_secret_value() if pw else
                                         self.secrets.sim_password)
        if role == "admin":
            return broker_auth.ADMIN_USER, self.secrets.admin_password
        raise ValueError(f"unknown broker role {role!r}")

    @property
    def device_accounts_file(self) -> Path:
        """Device broker accounts (hashes and topics), as last provisioned from the registry."""
        return self.state_dir / "device-accounts.json"

    def write_broker_auth(self, device_accounts: Iterable[BrokerAccount] | None = None, *,
                          reload: bool = True) -> None:
        """Rewrite the local broker's password/ACL files and make it reload them."""
        if self.settings.external_broker:
            raise StackError("the broker is external: apply credentials on that broker")
        if device_accounts is not None:
            payload = [a.__dict__ | {"read": list(a.read), "write": list(a.write)}
                       for a in device_accounts]
            tmp = self.device_accounts_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(payload))
            tmp.chmod(0o600)
            tmp.replace(self.device_accounts_file)
        devices: list[BrokerAccount] = []
        if self.device_accounts_file.exists():
            devices = [BrokerAccount(d["username"], d["password_hash"], tuple(d["read"]),
                                     tuple(d["write"]), d.get("client_id", d["username"]))
                       for d in json.loads(self.device_accounts_file.read_text())]
        mq = self._mosquitto()
        accounts = [*self.service_accounts(), *devices]
        mq.root.mkdir(parents=True, exist_ok=True)
        running = reload and mq.pid() is not None
        if not running:
            broker_auth.write_files(mq.passwd_file, mq.acl_file, accounts,
                                    dynsec_file=mq.dynsec_file)
            return
        if mq.binds_client_ids():
            # Bind new accounts before the password file lets them in.
            with self._dynsec() as ctl:
                dynsec.sync(ctl, *broker_auth.dynsec_plan(accounts))
        else:
            log.warning("the running broker was started without client-id bindings; restart "
                        "it (`beffroi stack down` then `beffroi stack up`) to apply them")
        broker_auth.write_files(mq.passwd_file, mq.acl_file, accounts)
        mq.reload()

    def service_accounts(self) -> list[BrokerAccount]:
        """Beffroi's own broker accounts on the local broker (ingest workers, simulator, admin)."""
        s = self.settings
        ingest_user, ingest_pw = self.mqtt_credentials("ingest")
        sim_user, sim_pw = self.mqtt_credentials("sim")
        try:
            return broker_auth.service_accounts(
                prefix=s.topic_prefix, ingest_password=ingest_pw, sim_password=sim_pw,
                admin_password=self.secrets.admin_password, ingest_user=ingest_user,
                sim_user=sim_user, ingest_client_id=s.ingest_client_id,
                ingest_connections=s.ingest_max_workers, sim_connections=s.sim_max_connections,
                bridge_prefix=s.bridge_prefix)
        except ValueError as exc:
            raise StackError(str(exc)) from exc

    @contextlib.contextmanager
    def _dynsec(self) -> Iterator[dynsec.DynsecControl]:
        host, port = self.broker_address()
        user, password = self.mqtt_credentials("admin")
        try:
            ctl = dynsec.DynsecControl(host, port, user, password,
                                       timeout=self.settings.startup_timeout_s)
        except dynsec.DynsecError as exc:
            raise StackError(f"cannot update the broker's client-id bindings: {exc}") from exc
        try:
            yield ctl
        except dynsec.DynsecError as exc:
            raise StackError(f"cannot update the broker's client-id bindings: {exc}") from exc
        finally:
            ctl.close()

    def broker(self) -> Mosquitto:
        """The local broker (for restarts in tests and reloads)."""
        return self._mosquitto()

    def postgres(self) -> Postgres:
        """The local PostgreSQL cluster."""
        return self._postgres()


__all__ = ["ServiceStatus", "Stack", "StackError"]
