"""Secrets generated once for the local stack, kept in ``<state_dir>/secrets.json`` (mode 600)."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class LocalSecrets:
    """Passwords of the local database superuser and of Beffroi's broker accounts."""

    pg_password: str
    ingest_password: str
    sim_password: str
    admin_password: str


def load_or_create(state_dir: Path) -> LocalSecrets:
    """Read the stack's secrets, generating any that are missing."""
    path = state_dir / "secrets.json"
    data: dict[str, str] = {}
    if path.exists():
        data = json.loads(path.read_text())
    fields = LocalSecrets.__dataclass_fields__
    changed = False
    for name in fields:
        if not data.get(name):
            data[name] = secrets.token_urlsafe(24)
            changed = True
    if changed:
        state_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({k: data[k] for k in fields}, fh, indent=2)
        tmp.replace(path)
    return LocalSecrets(**{k: data[k] for k in fields})


def as_dict(s: LocalSecrets) -> dict[str, str]:
    """The secrets as a plain dict."""
    return asdict(s)
