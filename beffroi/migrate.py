"""Forward-only numbered SQL migrations, each in its own transaction.

They live in ``sql/`` and ship inside the package (``beffroi/migrations``, a link to
``sql/``, read with importlib.resources), so an installed wheel migrates like a
checkout; finding none at all is an error, never "up to date".

The metrics' statements (``sql/metrics/*.sql``: SQL functions in schema ``metric``, each
metric's SQL in one file, see docs/metrics.md) are not numbered: they hold no data, so
after the numbered migrations the whole schema is rebuilt from the files whenever their
checksum changed, in one transaction (readers see the old functions or the new ones).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import psycopg

log = logging.getLogger(__name__)

MIGRATION_RE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
LOCK_ID = 0x62656666  # advisory lock: two `migrate` runs never interleave
METRICS_DIR = "metrics"  # sql/metrics/: the metric functions, rebuilt when changed
METRIC_RE = re.compile(r"^[a-z0-9_]+\.sql$")


class MigrationError(RuntimeError):
    """A migration is malformed, changed after being applied, or failed."""


@dataclass(frozen=True)
class Migration:
    """One SQL file."""

    version: int
    name: str
    path: Traversable
    checksum: str

    @property
    def sql(self) -> str:
        """The file's SQL."""
        return self.path.read_text(encoding="utf-8")


def default_sql_dir() -> Traversable:
    """The migrations shipped with the package: ``beffroi/migrations``, a link to the
    repository's ``sql/`` that the wheel holds as package data."""
    return resources.files("beffroi") / "migrations"


def discover(sql_dir: Traversable | Path) -> list[Migration]:
    """The migrations in ``sql_dir``, in order; refuses duplicate numbers and odd names,
    and a directory with none at all (a package installed without its migrations)."""
    found: dict[int, Migration] = {}
    files = (p for p in (sql_dir.iterdir() if sql_dir.is_dir() else ())
             if p.name.endswith(".sql") and p.is_file())
    for path in sorted(files, key=lambda p: p.name):
        m = MIGRATION_RE.match(path.name)
        if not m:
            raise MigrationError(f"{path.name}: migration files are named NNN_name.sql")
        version = int(m.group(1))
        if version in found:
            raise MigrationError(f"two migrations numbered {version:03d}")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        found[version] = Migration(version, m.group(2), path, digest)
    if not found:
        raise MigrationError(f"no migration found in {sql_dir}: the installation is "
                             "incomplete (the package ships beffroi/migrations/*.sql)")
    return [found[v] for v in sorted(found)]


def discover_metrics(sql_dir: Traversable | Path) -> list[Traversable | Path]:
    """The metric files (``sql/metrics/*.sql``), in name order."""
    folder = sql_dir / METRICS_DIR
    if not folder.is_dir():
        return []
    files = sorted((p for p in folder.iterdir() if p.name.endswith(".sql") and p.is_file()),
                   key=lambda p: p.name)
    for path in files:
        if not METRIC_RE.match(path.name):
            raise MigrationError(f"metrics/{path.name}: metric files are named name.sql")
    return files


def metrics_checksum(files: list[Traversable | Path]) -> str:
    """One digest over the metric files' names and contents."""
    h = hashlib.sha256()
    for path in files:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _apply_metrics(conn: psycopg.Connection[Any], files: list[Traversable | Path]) -> bool:
    """Rebuild schema ``metric`` from ``files`` when their checksum changed."""
    conn.execute("CREATE TABLE IF NOT EXISTS metric_functions ("
                 " id boolean PRIMARY KEY DEFAULT true CHECK (id), checksum text NOT NULL,"
                 " applied_at timestamptz NOT NULL DEFAULT now())")
    digest = metrics_checksum(files)
    row = conn.execute("SELECT checksum FROM metric_functions").fetchone()
    if row is not None and row[0] == digest:
        return False
    log.info("rebuilding the metric functions (%d files)", len(files))
    with conn.transaction():
        conn.execute("DROP SCHEMA IF EXISTS metric CASCADE")
        conn.execute("CREATE SCHEMA metric")
        conn.execute("GRANT USAGE ON SCHEMA metric TO PUBLIC")
        for path in files:
            try:
                conn.execute(path.read_text(encoding="utf-8").encode())
            except psycopg.Error as exc:
                raise MigrationError(f"metrics/{path.name} failed: {exc}") from exc
        conn.execute("INSERT INTO metric_functions (checksum) VALUES (%s) ON CONFLICT (id) "
                     "DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now()",
                     (digest,))
    return True


def migrate(conninfo: str, sql_dir: Traversable | Path | None = None) -> list[Migration]:
    """Apply pending migrations, then rebuild the metric functions if their files changed;
    return the migrations applied now (empty when up to date)."""
    sql_dir = sql_dir or default_sql_dir()
    migrations = discover(sql_dir)
    metric_files = discover_metrics(sql_dir)
    applied_now: list[Migration] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_ID,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            rows = conn.execute("SELECT version, name, checksum FROM schema_migrations")
            applied = {v: (n, c) for v, n, c in rows.fetchall()}
            for mig in migrations:
                if mig.version in applied:
                    _name, checksum = applied[mig.version]
                    if checksum != mig.checksum:
                        raise MigrationError(
                            f"migration {mig.path.name} was changed after it was applied "
                            f"(recorded checksum {checksum[:12]}, file {mig.checksum[:12]}); "
                            "migrations are forward-only: revert the edit and add a new file"
                        )
                    continue
                log.info("applying migration %s", mig.path.name)
                try:
                    with conn.transaction():
                        conn.execute(mig.sql.encode())
                        conn.execute(
                            "INSERT INTO schema_migrations (version, name, checksum)"
                            " VALUES (%s, %s, %s)", (mig.version, mig.name, mig.checksum))
                except psycopg.Error as exc:
                    raise MigrationError(f"migration {mig.path.name} failed: {exc}") from exc
                applied_now.append(mig)
            _apply_metrics(conn, metric_files)
            unknown = sorted(set(applied) - {m.version for m in migrations})
            if unknown:
                log.warning("database has migrations this code does not know: %s", unknown)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_ID,))
    return applied_now
