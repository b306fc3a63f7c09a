"""The stack's private PostgreSQL cluster, with TimescaleDB preloaded, on loopback."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from beffroi.stack.errors import StackError
from beffroi.stack.process import chown_tree, port_open, read_pid, run, wait_for_port

log = logging.getLogger(__name__)

SUPERUSER = "beffroi"

# Appended to the cluster's postgresql.conf at init. Sized for a 2-core, few-GB box.
CONF_TEMPLATE = """
# --- Beffroi local stack ---
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = ''
shared_preload_libraries = 'timescaledb'
timescaledb.telemetry_level = off
max_connections = 100
shared_buffers = 512MB          # hypertable chunks of the demo city fit in memory
work_mem = 32MB                 # API aggregates sort/hash in memory
maintenance_work_mem = 256MB
wal_compression = on
max_wal_size = 2GB              # fewer checkpoints under bulk COPY
checkpoint_timeout = 15min
timezone = 'UTC'                # storage is UTC; the API converts to local time
log_min_duration_statement = 2000
track_commit_timestamp = on     # publish-to-commit latency in benchmarks and diagnostics
password_encryption = scram-sha-256
"""


class Postgres:
    """Start, stop and inspect the private cluster."""

    def __init__(self, *, pg_bin: Path, data_dir: Path, port: int, user: str | None,
                 password: str, timeout: float) -> None:
        self.pg_bin = pg_bin
        self.data_dir = data_dir
        self.port = port
        self.user = user
        self.password = password
        self.timeout = timeout
        self.log_file = data_dir.parent / "postgres.log"

    @property
    def pid_file(self) -> Path:
        """PostgreSQL's own pid file."""
        return self.data_dir / "postmaster.pid"

    def pid(self) -> int | None:
        """Pid of the running postmaster of this cluster, if any."""
        return read_pid(self.pid_file)

    def initialised(self) -> bool:
        """True when the data directory holds a cluster."""
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        """Create the cluster (superuser ``beffroi`` with the stack's password)."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        chown_tree(self.data_dir.parent, self.user)
        fd, pwfile = tempfile.mkstemp(prefix="beffroi-pw-")
        try:
            os.write(fd, self.password.encode())
            os.close(fd)
            if self.user is not None:
                chown_tree(Path(pwfile), self.user)
            log.info("initialising PostgreSQL cluster in %s", self.data_dir)
            run([str(self.pg_bin / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
                 "--pwfile", pwfile, "--auth=scram-sha-256", "-E", "UTF8",
                 "--locale=C.UTF-8"], user=self.user)
        finally:
            Path(pwfile).unlink(missing_ok=True)
        with (self.data_dir / "postgresql.conf").open("a") as fh:
            fh.write(CONF_TEMPLATE.format(port=self.port))

    def start(self) -> bool:
        """Start the cluster unless it runs; True if it was started now."""
        if self.pid() is not None:
            return False
        if not self.initialised():
            self.init()
        if port_open("127.0.0.1", self.port):
            raise StackError(
                f"port {self.port} is taken by another program; set BEFFROI_PG_PORT to a free port"
            )
        self.log_file.touch()
        chown_tree(self.log_file, self.user)
        proc = run([str(self.pg_bin / "pg_ctl"), "-D", str(self.data_dir), "-l",
                    str(self.log_file), "-o", f"-p {self.port}", "-w", "-t",
                    str(int(self.timeout)), "start"], user=self.user, check=False,
                   timeout=self.timeout + 10)
        if proc.returncode != 0:
            tail = "\n".join(self.log_file.read_text(errors="replace").splitlines()[-15:])
            raise StackError(f"PostgreSQL did not start; see {self.log_file}\n{tail}")
        wait_for_port("127.0.0.1", self.port, timeout=self.timeout, what="PostgreSQL",
                      log=self.log_file)
        return True

    def stop(self) -> bool:
        """Stop the cluster if it runs; True if it was running."""
        if self.pid() is None:
            return False
        run([str(self.pg_bin / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w",
             "-t", "60", "stop"], user=self.user, timeout=90)
        return True

    def url(self, db: str) -> str:
        """Connection URL of database ``db`` on this cluster."""
        return f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{db}"
