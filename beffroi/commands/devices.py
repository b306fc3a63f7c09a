"""``beffroi devices``."""

from __future__ import annotations

import argparse
from typing import Any

from beffroi.context import CommandError, Context


def register(sub: Any) -> None:
    """Add ``devices``."""
    p = sub.add_parser("devices", help="(not available yet)")
    p.set_defaults(handler=_run)


def _run(ctx: Context, args: argparse.Namespace) -> int:
    raise CommandError("devices is not available yet")
