"""A primary and its hot standby: two private PostgreSQL clusters configured as the stack's,
the second made with ``pg_basebackup -R`` and streaming from the first. The replica tests and
the replica benchmark use it; a deployment runs its standbys under a failover manager
(docs/scale.md)."""

from __future__ import annotations

import contextlib
import logging
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from beffroi.stack.errors import StackError
from beffroi.stack.install import PG_ROOT, pg_major_installed
from beffroi.stack.postgres import Postgres
from beffroi.stack.process import chown_tree, run, service_user

log = logging.getLogger(__name__)


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Pair:
    """A running primary and its streaming standby, and the database both serve."""

    primary: Postgres
    standby: Postgres
    database: str = "beffroi"

    @property
    def primary_url(self) -> str:
        """The database on the primary."""
        return self.primary.url(self.database)

    @property
    def standby_url(self) -> str:
        """The same database on the standby (read-only)."""
        return self.standby.url(self.database)

    def replayed(self, timeout: float = 60) -> None:
        """Wait until the standby has replayed everything the primary has written."""
        with psycopg.connect(self.primary_url, autocommit=True) as p:
            row = p.execute("SELECT pg_current_wal_lsn()").fetchone()
        assert row is not None
        target = row[0]
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.standby_url, autocommit=True) as s:
            while time.monotonic() < deadline:
                done = s.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn",
                                 (target,)).fetchone()
                if done and done[0]:
                    return
                time.sleep(0.1)
        raise TimeoutError(f"the standby did not replay the primary's WAL up to {target} "
                           f"within {timeout:g} s")


def start_standby(primary: Postgres, standby: Postgres) -> None:
    """Copy the running ``primary`` into ``standby``'s empty data directory with
    ``pg_basebackup -R -X stream`` (a replication connection as the stack's superuser,
    which initdb's default pg_hba.conf allows on loopback), then start it as a hot
    standby streaming from the primary."""
    conninfo = f"host=127.0.0.1 port={primary.port} user=beffroi password={primary.password}"
    t0 = time.monotonic()
    run([str(primary.pg_bin / "pg_basebackup"), "-d", conninfo, "-D", str(standby.data_dir),
         "-R", "-X", "stream", "-c", "fast"], user=standby.user, timeout=1800)
    log.info("base backup of port %d in %.1fs", primary.port, time.monotonic() - t0)
    standby.start()
    with psycopg.connect(standby.url("postgres"), autocommit=True) as conn:
        row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    if row != (True,):
        raise StackError(f"the cluster on port {standby.port} is not a standby")


@contextlib.contextmanager
def replica_pair(database: str = "beffroi", *, setup: Callable[[str], object] | None = None,
                 prefix: str = "beffroi-replica-", timeout: float = 60) -> Iterator[Pair]:
    """A new primary holding ``database`` (``setup(url)`` run on it first, e.g. migrations)
    and its standby, on free ports under a temporary directory; both stopped and removed
    on exit."""
    major = pg_major_installed()
    if major is None:
        raise StackError("PostgreSQL is not installed: run `beffroi stack up` once")
    pg_bin = PG_ROOT / major / "bin"
    user = service_user("postgres")
    root = Path(tempfile.mkdtemp(prefix=prefix))  # under /tmp: reachable by postgres
    password = secrets.token_urlsafe(16)
    (root / "primary").mkdir()
    (root / "standby").mkdir()
    chown_tree(root, user)
    primary = Postgres(pg_bin=pg_bin, data_dir=root / "primary" / "data", port=free_port(),
                       user=user, password=password, timeout=timeout)
    standby = Postgres(pg_bin=pg_bin, data_dir=root / "standby" / "data", port=free_port(),
                       user=user, password=password, timeout=timeout)
    try:
        primary.start()
        with psycopg.connect(primary.url("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        if setup is not None:
            setup(primary.url(database))
        start_standby(primary, standby)
        yield Pair(primary, standby, database)
    finally:
        for cluster in (standby, primary):
            with contextlib.suppress(Exception):  # stop the other one too
                cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


__all__ = ["Pair", "free_port", "replica_pair", "start_standby"]
