"""``beffroi migrate``: apply the SQL migrations shipped in the package."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from beffroi.context import CommandError, Context
from beffroi.migrate import MigrationError, migrate


def register(sub: Any) -> None:
    """Add ``migrate``."""
    p = sub.add_parser("migrate", help="apply pending database migrations",
                       description="Apply the numbered SQL migrations shipped in the package "
                       "(sql/) that the database "
                       "has not applied yet, each in its own transaction. Refuses a migration "
                       "edited after it was applied.")
    p.add_argument("--sql-dir", type=Path, default=None,
                   help="migrations directory (default: the package's)")
    p.set_defaults(handler=_migrate)


def _migrate(ctx: Context, args: argparse.Namespace) -> int:
    try:
        applied = migrate(ctx.database_url(), args.sql_dir)
    except MigrationError as exc:
        raise CommandError(str(exc)) from exc
    if applied:
        for m in applied:
            print(f"applied {m.path.name}")
    else:
        print("database is up to date")
    return 0
