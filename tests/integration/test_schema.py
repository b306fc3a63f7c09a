"""Migrations and the first schema: idempotent, refuse edits, hypertables, idempotent writes."""

from __future__ import annotations

import secrets
import shutil
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from beffroi.migrate import MigrationError, default_sql_dir, migrate
from beffroi.settings import Settings
from beffroi.stack import Stack
from tests.conftest import throwaway_database

HYPERTABLES = {
    "wifi_ap_stats": "time",
    "wifi_sessions": "time",
    "parking_spot_state": "time",
    "parking_transactions": "time",
    "parking_meter_status": "time",
    "grid_readings": "time",
    "dead_letters": "received_at",
    **{f"rollup_{name}_1h": "hour" for name in (
        "parking_spot", "parking_tx", "parking_faults", "grid", "grid_site", "wifi_ap",
        "wifi_site", "parking_turnover")},
    "rollup_parking_zone_15m": "slot",
    "rollup_grid_site_30m": "slot",
}


def _sql_dir() -> Path:
    """The package's migrations (a directory in a checkout)."""
    return Path(str(default_sql_dir()))


def test_no_migration_at_all_is_refused(db_url: str, tmp_path: Path,
                                        conn: psycopg.Connection) -> None:
    """An installation without its migrations fails, rather than saying "up to date"."""
    before = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
    with pytest.raises(MigrationError, match="no migration found"):
        migrate(db_url, tmp_path)
    # nor a package whose migrations directory is missing (a link left dangling)
    with pytest.raises(MigrationError, match="no migration found"):
        migrate(db_url, tmp_path / "migrations")
    assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == before


def test_migrations_are_recorded_and_rerun_is_noop(db_url: str, conn: psycopg.Connection) -> None:
    files = sorted(p.name for p in _sql_dir().glob("*.sql"))
    rows = conn.execute("SELECT version, checksum FROM schema_migrations ORDER BY 1").fetchall()
    assert [r[0] for r in rows] == [int(f[:3]) for f in files]
    assert migrate(db_url) == []


def test_edited_migration_is_refused(db_url: str, tmp_path: Path) -> None:
    sql_dir = tmp_path / "sql"
    shutil.copytree(_sql_dir(), sql_dir)
    first = sorted(sql_dir.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(db_url, sql_dir)


def test_each_reading_table_is_a_hypertable(conn: psycopg.Connection) -> None:
    rows = conn.execute(
        "SELECT hypertable_name, column_name FROM timescaledb_information.dimensions"
    ).fetchall()
    assert dict(rows) == HYPERTABLES


def test_duplicate_device_time_is_ignored(conn: psycopg.Connection, uid: str) -> None:
    t = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
    sql = ("INSERT INTO grid_readings (time, device_id, energy_import_wh) VALUES (%s, %s, %s)"
           " ON CONFLICT DO NOTHING")
    conn.execute(sql, (t, uid, 1000))
    conn.execute(sql, (t, uid, 2000))
    rows = conn.execute("SELECT energy_import_wh FROM grid_readings WHERE device_id = %s",
                        (uid,)).fetchall()
    assert rows == [(1000,)]
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("INSERT INTO grid_readings (time, device_id) VALUES (%s, %s)", (t, uid))


def test_check_constraints_reject_absurd_values(conn: psycopg.Connection, uid: str) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO parking_spot_state (time, device_id, state) VALUES "
                     "(now(), %s, 'maybe')", (uid,))
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO wifi_sessions (time, device_id, client_key, event) VALUES "
                     "(now(), %s, '\\x00112233445566'::bytea, 'associated')", (uid,))


def test_meter_serial_migration_moves_12_digit_meter_ids(stack: Stack, tmp_path: Path) -> None:
    """Before 011 a Linky's ``meter_id`` held either its serial (12 digits) or its PRM (14);
    011 moves serials to ``meter_serial`` and leaves ``meter_id`` to PRMs."""
    old = tmp_path / "sql"
    old.mkdir()
    for path in _sql_dir().glob("*.sql"):
        if path.name < "011_meter_serial.sql":
            shutil.copy(path, old / path.name)
    name = f"beffroi_test_mig_{secrets.token_hex(3)}"
    stack.ensure_database(name)
    url = stack.database_url(name)
    try:
        migrate(url, old)
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("INSERT INTO sites (id, kind, name, insee) VALUES"
                      " ('d', 'district', 'D', '62041')")
            c.execute("INSERT INTO devices (id, family, site_id, name, report_interval_s,"
                      " meter_id) VALUES ('serial', 'grid_meter', 'd', 's', 600, '041876097283'),"
                      " ('prm', 'grid_meter', 'd', 'p', 600, '30001610071843')")
        migrate(url)
        with psycopg.connect(url, autocommit=True) as c:
            rows = c.execute("SELECT id, meter_id, meter_serial FROM devices ORDER BY id")
            assert rows.fetchall() == [("prm", "30001610071843", None),
                                       ("serial", None, "041876097283")]
            for column, value in (("meter_id", "041876097283"), ("meter_serial", "30001610071843"),
                                  ("meter_serial", "04187609728")):
                with pytest.raises(psycopg.errors.CheckViolation):
                    c.execute(f"UPDATE devices SET {column} = %s WHERE id = 'prm'", (value,))
    finally:
        stack.drop_database(name)


def _functions(url: str) -> dict[str, str]:
    with psycopg.connect(url) as c:
        return dict(c.execute(
            "SELECT p.proname, pg_get_functiondef(p.oid) FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'metric'"
        ).fetchall())


def test_metric_functions_are_rebuilt_when_their_files_change(
        stack: Stack, settings: Settings, tmp_path: Path) -> None:
    """sql/metrics/ is applied after the migrations, again only when a file changed; a
    broken file fails with its name and leaves the functions in force untouched."""
    sql_dir = tmp_path / "sql"
    shutil.copytree(_sql_dir(), sql_dir)
    with throwaway_database(stack, settings, "metricfn") as url:
        migrate(url, sql_dir)
        first = _functions(url)
        assert "parking_revenue" in first and "parking_revenue_rollup" in first
        with psycopg.connect(url) as c:
            applied = c.execute("SELECT applied_at FROM metric_functions").fetchone()
        migrate(url, sql_dir)  # unchanged: not rebuilt
        with psycopg.connect(url) as c:
            assert c.execute("SELECT applied_at FROM metric_functions").fetchone() == applied
        (sql_dir / "metrics" / "zz_extra.sql").write_text(
            "CREATE FUNCTION metric.answer() RETURNS integer LANGUAGE sql AS 'SELECT 42';")
        migrate(url, sql_dir)
        assert set(_functions(url)) == {*first, "answer"}
        (sql_dir / "metrics" / "zz_extra.sql").write_text("CREATE FUNCTION metric.oops(")
        with pytest.raises(MigrationError, match=r"zz_extra\.sql"):
            migrate(url, sql_dir)
        assert set(_functions(url)) == {*first, "answer"}
