"""API bearer tokens: creation (clear text shown once), hashing, lookup, revocation.

Tokens are 256-bit random strings, so a plain SHA-256 is a safe way to store them (no
dictionary to resist, unlike passwords) and makes lookup one index probe.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import psycopg
from psycopg.rows import dict_row

TOKEN_PREFIX = "bfr_"  # recognisable in logs and by secret scanners
LAST_USED_RESOLUTION_S = 60  # write last_used_at at most once a minute per token


class Scope(StrEnum):
    """What a token may do. ``admin`` implies the others."""

    READ = "read"
    OPERATE = "operate"
    ADMIN = "admin"


@dataclass(frozen=True)
class TokenInfo:
    """A token's row, without its hash."""

    id: int
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    def allows(self, scope: Scope) -> bool:
        """True when the token carries ``scope`` (or ``admin``)."""
        return scope.value in self.scopes or Scope.ADMIN.value in self.scopes


def hash_token(token: str) -> bytes:
    """SHA-256 of the token string."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def new_token() -> str:
    """A fresh random token."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _info(row: dict[str, Any]) -> TokenInfo:
    return TokenInfo(row["id"], row["name"], tuple(row["scopes"]), row["created_at"],
                     row["revoked_at"], row["last_used_at"])


_COLS = "id, name, scopes, created_at, revoked_at, last_used_at"


def create_token(conn: psycopg.Connection[Any], name: str,
                 scopes: Sequence[str]) -> tuple[str, TokenInfo]:
    """Store a new token; return the clear token (never stored) and its row."""
    wanted = sorted({Scope(s).value for s in scopes})
    if not wanted:
        raise ValueError("a token needs at least one scope")
    token = new_token()
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"INSERT INTO api_tokens (name, token_hash, scopes) VALUES (%s, %s, %s) "
                    f"RETURNING {_COLS}", (name, hash_token(token), wanted))
        row = cur.fetchone()
    conn.commit()
    assert row is not None
    return token, _info(row)


def list_tokens(conn: psycopg.Connection[Any], *, include_revoked: bool = False) -> list[TokenInfo]:
    """Every token (valid ones only unless ``include_revoked``)."""
    where = "TRUE" if include_revoked else "revoked_at IS NULL"
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT {_COLS} FROM api_tokens WHERE {where} ORDER BY id")
        return [_info(r) for r in cur.fetchall()]


def revoke_token(conn: psycopg.Connection[Any], *, token_id: int | None = None,
                 name: str | None = None) -> list[TokenInfo]:
    """Revoke by id or by name (every valid token of that name); return what was revoked."""
    if (token_id is None) == (name is None):
        raise ValueError("give exactly one of token_id and name")
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"UPDATE api_tokens SET revoked_at = now() WHERE revoked_at IS NULL AND "
                    f"(id = %s OR name = %s) RETURNING {_COLS}", (token_id, name))
        rows = cur.fetchall()
    conn.commit()
    return [_info(r) for r in rows]


class TokenCache:
    """The tokens one API process verified, trusted for ``ttl_s`` seconds without asking
    the database again: a revoked token keeps working that long at most, in exchange for
    one query less per request. ``ttl_s`` 0 keeps nothing (every request asks). Only valid
    tokens are kept (an unknown one is looked up each time), by hash, at most
    ``max_entries`` of them (past that the oldest is dropped)."""

    def __init__(self, ttl_s: float, max_entries: int = 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[bytes, tuple[float, TokenInfo]] = {}

    def get(self, token_hash: bytes) -> TokenInfo | None:
        """The token verified less than ``ttl_s`` ago, or None."""
        hit = self._entries.get(token_hash)
        if hit is None:
            return None
        if self._clock() >= hit[0]:
            del self._entries[token_hash]
            return None
        return hit[1]

    def put(self, token_hash: bytes, info: TokenInfo) -> None:
        """Trust ``info`` for ``ttl_s`` from now."""
        if self.ttl_s <= 0:
            return
        self._entries.pop(token_hash, None)
        while len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]  # insertion order: the oldest
        self._entries[token_hash] = (self._clock() + self.ttl_s, info)


async def authenticate(conn: psycopg.AsyncConnection[Any], token: str,
                       cache: TokenCache | None = None) -> TokenInfo | None:
    """The valid token matching ``token``, or None; records its use (coarsely: one write
    per token per minute, so a request costs one read). With ``cache``, a token verified
    less than ``cache.ttl_s`` ago is taken from it without a query."""
    digest = hash_token(token)
    if cache is not None and (cached := cache.get(digest)) is not None:
        return cached
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_COLS}, (last_used_at IS NULL OR last_used_at < now() - "
            f"make_interval(secs => %s)) AS stale FROM api_tokens WHERE token_hash = %s "
            f"AND revoked_at IS NULL", (LAST_USED_RESOLUTION_S, digest))
        row = await cur.fetchone()
        if row is not None and row["stale"]:
            # On a hot standby (BEFFROI_DATABASE_READ_URL) the write is refused: the token
            # stays valid, its last use is recorded by the requests served from the primary.
            with contextlib.suppress(psycopg.errors.ReadOnlySqlTransaction):
                async with conn.transaction():
                    await cur.execute("UPDATE api_tokens SET last_used_at = now() WHERE id = %s",
                                      (row["id"],))
    if row is None:
        return None
    info = _info(row)
    if cache is not None:
        cache.put(digest, info)
    return info
