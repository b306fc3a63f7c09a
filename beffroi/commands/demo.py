"""``beffroi demo``."""

from __future__ import annotations

import argparse
from typing import Any

from beffroi.context import CommandError, Context


def register(sub: Any) -> None:
    """Add ``demo``."""
    p = sub.add_parser("demo", help="(not available yet)")
    p.set_defaults(handler=_run)


def _run(ctx: Context, args: argparse.Namespace) -> int:
    raise CommandError("demo is not available yet")
