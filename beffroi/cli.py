"""The ``beffroi`` command: one entry point, a subcommand per job."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from beffroi.commands import (
    api,
    demo,
    devices,
    ingest,
    maintain,
    migrate,
    opendata,
    simulate,
    stack,
    tokens,
)
from beffroi.context import CommandError, Context
from beffroi.endpoints import MissingSetting
from beffroi.settings import Settings

log = logging.getLogger("beffroi")

COMMANDS = (stack, migrate, devices, ingest, api, simulate, demo, tokens, maintain,
            opendata)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="beffroi",
        description="Beffroi: telemetry backend for a city's connected equipment.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def setup_logging(verbose: bool) -> None:
    """Log lines to stderr; level from -v or BEFFROI_LOG_LEVEL."""
    level = "DEBUG" if verbose else os.environ.get("BEFFROI_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        settings = Settings()
    except ValidationError as exc:
        log.error("invalid settings (BEFFROI_* variables or .env):\n%s", exc)
        return 2
    ctx = Context(settings)
    try:
        code: int = args.handler(ctx, args)
    except MissingSetting as exc:
        log.error("%s", exc)
        return 2
    except CommandError as exc:  # the development stack's StackError too
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        log.warning("interrupted")
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
