"""One-time sign-in codes: a short-lived code in a link, exchanged once for a token.

The link carries the code, never the token; the API process keeps, in memory only, the hash
of each code with the token it stands for, for a few minutes. With several API processes a
code works only on the process that made it (``beffroi demo`` runs one).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

CODE_TTL_S = 300.0
MAX_CODES = 1000


@dataclass
class SignInCodes:
    """Codes waiting to be exchanged: SHA-256 of the code -> (token, deadline)."""

    ttl_s: float = CODE_TTL_S
    clock: Callable[[], float] = time.monotonic
    _codes: dict[bytes, tuple[str, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self, token: str) -> tuple[str, float]:
        """A new code for ``token``; returns the code and its lifetime in seconds."""
        code = secrets.token_urlsafe(24)
        now = self.clock()
        with self._lock:
            self._drop_expired(now)
            if len(self._codes) >= MAX_CODES:
                self._codes.pop(next(iter(self._codes)))
            self._codes[_digest(code)] = (token, now + self.ttl_s)
        return code, self.ttl_s

    def redeem(self, code: str) -> str | None:
        """The token of a valid code, which can then not be used again; else None."""
        now = self.clock()
        with self._lock:
            self._drop_expired(now)
            got = self._codes.pop(_digest(code), None)
        return got[0] if got else None

    def _drop_expired(self, now: float) -> None:
        for key in [k for k, (_, deadline) in self._codes.items() if deadline <= now]:
            del self._codes[key]


def _digest(code: str) -> bytes:
    return hashlib.sha256(code.encode("utf-8")).digest()
