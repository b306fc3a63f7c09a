"""``beffroi tokens``: bearer tokens of the HTTP API (create, list, revoke)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import psycopg

from api.tokens import Scope, TokenInfo, create_token, list_tokens, revoke_token
from beffroi.context import CommandError, Context

SCOPES = [s.value for s in Scope]


def register(sub: Any) -> None:
    """Add ``tokens`` and its subcommands."""
    p = sub.add_parser("tokens", help="API bearer tokens: create, list, revoke",
                       description="Tokens of the HTTP API. Scopes: read (technical "
                       "services), operate (operators), admin (devices, tokens; implies the "
                       "others). Only a SHA-256 of a token is stored: it is shown once.")
    ts = p.add_subparsers(dest="tokens_command", required=True, metavar="ACTION")
    c = ts.add_parser("create", help="create a token and print it once")
    c.add_argument("--name", required=True, help="who or what uses it")
    c.add_argument("--scope", action="append", required=True, choices=SCOPES,
                   help="repeat for several scopes")
    c.set_defaults(handler=_create)
    ls = ts.add_parser("list", help="list tokens (never their value)")
    ls.add_argument("--all", action="store_true", help="include revoked tokens")
    ls.add_argument("--format", choices=("table", "json"), default="table")
    ls.set_defaults(handler=_list)
    rv = ts.add_parser("revoke", help="revoke a token by id, or every token of a name")
    g = rv.add_mutually_exclusive_group(required=True)
    g.add_argument("id", nargs="?", type=int, help="token id (see `tokens list`)")
    g.add_argument("--name", help="revoke every valid token of this name")
    rv.set_defaults(handler=_revoke)


def _connect(ctx: Context) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(ctx.database_url())
    except psycopg.OperationalError as exc:
        raise CommandError(f"cannot reach the database: {exc}") from exc


def _as_dict(t: TokenInfo) -> dict[str, Any]:
    return {"id": t.id, "name": t.name, "scopes": list(t.scopes),
            "created_at": t.created_at.isoformat(),
            "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
            "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None}


def _create(ctx: Context, args: argparse.Namespace) -> int:
    name = args.name.strip()
    if not 1 <= len(name) <= 100:
        raise CommandError("--name must have 1 to 100 characters")
    with _connect(ctx) as conn:
        token, info = create_token(conn, name, args.scope)
    print(token)
    print(f"token {info.id} {info.name!r} scopes {','.join(info.scopes)}: shown once, "
          "keep it now", file=sys.stderr)
    return 0


def _list(ctx: Context, args: argparse.Namespace) -> int:
    with _connect(ctx) as conn:
        tokens = list_tokens(conn, include_revoked=args.all)
    if args.format == "json":
        print(json.dumps([_as_dict(t) for t in tokens], indent=2))
        return 0
    print(f"{'id':>5}  {'name':<24} {'scopes':<20} {'created':<20} {'last used':<20} revoked")
    for t in tokens:
        d = _as_dict(t)
        print(f"{t.id:>5}  {t.name:<24} {','.join(t.scopes):<20} {d['created_at'][:19]:<20} "
              f"{(d['last_used_at'] or '-')[:19]:<20} {(d['revoked_at'] or '-')[:19]}")
    return 0


def _revoke(ctx: Context, args: argparse.Namespace) -> int:
    with _connect(ctx) as conn:
        done = revoke_token(conn, token_id=args.id, name=args.name)
    if not done:
        raise CommandError("no valid token matches")
    for t in done:
        print(f"revoked token {t.id} {t.name!r}")
    return 0
