"""``beffroi stack``: the development stack, a local PostgreSQL + TimescaleDB and Mosquitto."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from beffroi.context import CommandError, Context


def register(sub: Any) -> None:
    """Add ``stack`` and its subcommands."""
    p = sub.add_parser(
        "stack", help="start, stop and inspect the local database and broker",
        description="Manage the project's own PostgreSQL + TimescaleDB cluster and Mosquitto "
        "broker (installed on first use). With BEFFROI_DATABASE_URL / BEFFROI_BROKER_URL set, "
        "those external services are used instead and not started. The other commands use this "
        "stack only with BEFFROI_DEV_STACK=1 (or the variables `beffroi stack env` prints).")
    ss = p.add_subparsers(dest="stack_command", required=True, metavar="ACTION")
    ss.add_parser("up", help="install what is missing, start what is not running, wait until "
                  "both accept connections").set_defaults(handler=_up)
    ss.add_parser("down", help="stop the processes the stack started (and no other)"
                  ).set_defaults(handler=_down)
    ss.add_parser("status", help="show what runs where").set_defaults(handler=_status)
    ss.add_parser("env", help="print the BEFFROI_* variables (shell exports) that point a "
                  "process at this stack").set_defaults(handler=_env)
    r = ss.add_parser("reset", help="stop and delete the state directory (all local data)")
    r.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    r.set_defaults(handler=_reset)


def _env(ctx: Context, args: argparse.Namespace) -> int:
    for name, value in ctx.stack.environment().items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


def _up(ctx: Context, args: argparse.Namespace) -> int:
    for line in ctx.stack.up():
        print(line)
    return 0


def _down(ctx: Context, args: argparse.Namespace) -> int:
    for line in ctx.stack.down():
        print(line)
    return 0


def _status(ctx: Context, args: argparse.Namespace) -> int:
    rows = ctx.stack.status()
    for st in rows:
        state = "running" if st.running else "stopped"
        pid = f" pid {st.pid}" if st.pid else ""
        print(f"{st.name:<11} {state:<8}{pid:<11} {st.where}")
    return 0 if all(st.running for st in rows) else 3


def _reset(ctx: Context, args: argparse.Namespace) -> int:
    target = ctx.stack.state_dir
    if not args.yes:
        if not sys.stdin.isatty():
            raise CommandError("stack reset deletes all local data; pass --yes to confirm")
        answer = input(f"Delete {target} and all local data? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("cancelled")
            return 1
    ctx.stack.reset()
    print(f"deleted {target}")
    return 0
