"""Per-device broker credentials: issue, rotate, revoke, and the broker accounts they give.

A device's broker user name is its id, and so is the only client id the broker lets it
use. Only the Mosquitto ``$7$`` hash of its password is stored (table ``device_credentials``);
the clear password exists once, in the :class:`IssuedCredential` returned to the caller. An
active device with active credentials gets a broker account that may write
``{prefix}/{segment}/{id}/#`` only.

The bridges (a LoRaWAN network server, a Linky TIC bridge) get accounts the same way (table
``bridge_credentials``): user name = client id = ``chirpstack`` or ``teleinfo``, reading and
writing their own topic tree only.
"""

from __future__ import annotations

import csv
import logging
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import psycopg

from beffroi.broker_auth import BrokerAccount, mosquitto_hash, render, render_dynsec
from devices.families import BRIDGE_TREES, SEGMENT_OF_FAMILY, Family, bridge_tree

log = logging.getLogger(__name__)

PASSWORD_BYTES = 24  # 192 bits of entropy, 32 URL-safe characters


@dataclass(frozen=True)
class IssuedCredential:
    """A new password, in clear: hand it to the device, it is not stored."""

    device_id: str
    password: str

    @property
    def username(self) -> str:
        """The broker user name (the device id)."""
        return self.device_id


@dataclass(frozen=True)
class CredentialInfo:
    """The stored state of one device's credentials."""

    device_id: str
    family: Family
    device_active: bool
    created_at: datetime
    rotated_at: datetime | None
    revoked_at: datetime | None

    @property
    def state(self) -> str:
        """``active``, ``revoked``, or ``inactive-device`` (kept but no broker account)."""
        if self.revoked_at is not None:
            return "revoked"
        return "active" if self.device_active else "inactive-device"


@dataclass
class CredentialChange:
    """Outcome of issue/rotate/revoke: what changed, and what was skipped and why."""

    issued: list[IssuedCredential] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """True if the broker accounts must be rewritten."""
        return bool(self.issued or self.revoked)


def generate_password() -> str:
    """A random URL-safe password."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


def _states(conn: psycopg.Connection[Any],
            device_ids: Sequence[str]) -> dict[str, tuple[bool, bool | None]]:
    """device id -> (device active, credentials active; None when there are none)."""
    rows = conn.execute(
        "SELECT d.id, d.active, c.revoked_at IS NULL AND c.device_id IS NOT NULL,"
        " c.device_id IS NOT NULL FROM devices d"
        " LEFT JOIN device_credentials c ON c.device_id = d.id WHERE d.id = ANY(%s)"
        " FOR UPDATE OF d", (list(device_ids),)).fetchall()
    return {r[0]: (r[1], r[2] if r[3] else None) for r in rows}


def issue(conn: psycopg.Connection[Any], device_ids: Sequence[str], *,
          force: bool = False) -> CredentialChange:
    """New credentials for devices that have none active (all of them with ``force``).

    Inactive devices are skipped: they get no broker account.
    """
    change = CredentialChange()
    with conn.transaction():
        states = _states(conn, device_ids)
        for dev_id in device_ids:
            state = states.get(dev_id)
            if state is None:
                change.skipped.append((dev_id, "unknown device"))
                continue
            device_active, cred_active = state
            if not device_active:
                change.skipped.append((dev_id, "device is inactive"))
            elif cred_active and not force:
                change.skipped.append((dev_id, "already has active credentials (use --force "
                                               "or rotate)"))
            else:
                change.issued.append(_store_new(conn, dev_id, rotated=bool(cred_active)))
    log.info("credentials issued for %d device(s), %d skipped", len(change.issued),
             len(change.skipped))
    return change


def rotate(conn: psycopg.Connection[Any], device_ids: Sequence[str]) -> CredentialChange:
    """Replace the password of devices with active credentials."""
    change = CredentialChange()
    with conn.transaction():
        states = _states(conn, device_ids)
        for dev_id in device_ids:
            state = states.get(dev_id)
            if state is None:
                change.skipped.append((dev_id, "unknown device"))
            elif not state[0]:
                change.skipped.append((dev_id, "device is inactive"))
            elif not state[1]:
                reason = "credentials are revoked" if state[1] is False else "no credentials"
                change.skipped.append((dev_id, f"{reason} (use generate)"))
            else:
                change.issued.append(_store_new(conn, dev_id, rotated=True))
    log.info("credentials rotated for %d device(s), %d skipped", len(change.issued),
             len(change.skipped))
    return change


def revoke(conn: psycopg.Connection[Any], device_ids: Sequence[str]) -> CredentialChange:
    """Revoke active credentials: the device loses its broker account."""
    change = CredentialChange()
    with conn.transaction():
        rows = conn.execute(
            "UPDATE device_credentials SET revoked_at = now()"
            " WHERE device_id = ANY(%s) AND revoked_at IS NULL RETURNING device_id",
            (list(device_ids),)).fetchall()
        change.revoked = sorted(r[0] for r in rows)
    done = set(change.revoked)
    change.skipped = [(d, "no active credentials") for d in device_ids if d not in done]
    log.info("credentials revoked for %d device(s)", len(change.revoked))
    return change


def _store_new(conn: psycopg.Connection[Any], device_id: str, *,
               rotated: bool) -> IssuedCredential:
    password = generate_password()
    conn.execute(
        "INSERT INTO device_credentials (device_id, password_hash) VALUES (%s, %s)"
        " ON CONFLICT (device_id) DO UPDATE SET password_hash = EXCLUDED.password_hash,"
        " created_at = CASE WHEN %s THEN device_credentials.created_at ELSE now() END,"
        " rotated_at = CASE WHEN %s THEN now() END, revoked_at = NULL",
        (device_id, mosquitto_hash(password), rotated, rotated))
    return IssuedCredential(device_id, password)


def list_credentials(conn: psycopg.Connection[Any],
                     device_ids: Sequence[str] | None = None) -> list[CredentialInfo]:
    """Stored credentials (all, or of these devices), by device id."""
    query = ("SELECT c.device_id, d.family, d.active, c.created_at, c.rotated_at, c.revoked_at"
             " FROM device_credentials c JOIN devices d ON d.id = c.device_id")
    params: tuple[Any, ...] = ()
    if device_ids is not None:
        query += " WHERE c.device_id = ANY(%s)"
        params = (list(device_ids),)
    rows = conn.execute(query + " ORDER BY c.device_id", params).fetchall()
    return [CredentialInfo(r[0], Family(r[1]), *r[2:]) for r in rows]


def device_write_topic(prefix: str, family: Family, device_id: str) -> str:
    """The topic filter a device may publish under."""
    return f"{prefix}/{SEGMENT_OF_FAMILY[family]}/{device_id}/#"


def broker_accounts(conn: psycopg.Connection[Any], prefix: str,
                    bridge_prefix: str = "") -> list[BrokerAccount]:
    """Broker accounts with active credentials, each bound to client id = user name.

    Active devices write their own topics and read nothing; bridges read and write their
    own tree (under ``bridge_prefix``).
    """
    rows = conn.execute(
        "SELECT c.device_id, c.password_hash, d.family FROM device_credentials c"
        " JOIN devices d ON d.id = c.device_id"
        " WHERE c.revoked_at IS NULL AND d.active ORDER BY c.device_id").fetchall()
    bridges = conn.execute(
        "SELECT bridge, password_hash FROM bridge_credentials WHERE revoked_at IS NULL"
        " ORDER BY bridge").fetchall()
    return [
        *(BrokerAccount(dev_id, pw_hash, read=(),
                        write=(device_write_topic(prefix, Family(family), dev_id),),
                        client_id=dev_id)
          for dev_id, pw_hash, family in rows),
        *(BrokerAccount(name, pw_hash, read=(bridge_tree(name, bridge_prefix),),
                        write=(bridge_tree(name, bridge_prefix),), client_id=name)
          for name, pw_hash in bridges),
    ]


# -- bridges ------------------------------------------------------------------------------

def issue_bridges(conn: psycopg.Connection[Any], names: Sequence[str], *,
                  force: bool = False) -> CredentialChange:
    """New credentials for bridges that have none active (all of them with ``force``)."""
    return _change_bridges(conn, names, action="issue", force=force)


def rotate_bridges(conn: psycopg.Connection[Any], names: Sequence[str]) -> CredentialChange:
    """Replace the password of bridges with active credentials."""
    return _change_bridges(conn, names, action="rotate")


def revoke_bridges(conn: psycopg.Connection[Any], names: Sequence[str]) -> CredentialChange:
    """Revoke bridges' active credentials: they lose their broker account."""
    return _change_bridges(conn, names, action="revoke")


def _change_bridges(conn: psycopg.Connection[Any], names: Sequence[str], *, action: str,
                    force: bool = False) -> CredentialChange:
    change = CredentialChange()
    with conn.transaction():
        rows = conn.execute(
            "SELECT bridge, revoked_at IS NULL FROM bridge_credentials WHERE bridge = ANY(%s)"
            " FOR UPDATE", (list(names),)).fetchall()
        active: dict[str, bool] = {r[0]: r[1] for r in rows}
        for name in dict.fromkeys(names):
            state = active.get(name)  # None: never issued
            if name not in BRIDGE_TREES:
                change.skipped.append((name, "unknown bridge"))
            elif action == "revoke":
                if state:
                    conn.execute("UPDATE bridge_credentials SET revoked_at = now()"
                                 " WHERE bridge = %s", (name,))
                    change.revoked.append(name)
                else:
                    change.skipped.append((name, "no active credentials"))
            elif action == "rotate" and not state:
                reason = "credentials are revoked" if state is False else "no credentials"
                change.skipped.append((name, f"{reason} (use generate)"))
            elif action == "issue" and state and not force:
                change.skipped.append((name, "already has active credentials (use --force "
                                             "or rotate)"))
            else:
                password = generate_password()
                rotated = bool(state)
                conn.execute(
                    "INSERT INTO bridge_credentials (bridge, password_hash) VALUES (%s, %s)"
                    " ON CONFLICT (bridge) DO UPDATE SET password_hash = EXCLUDED.password_hash,"
                    " created_at = CASE WHEN %s THEN bridge_credentials.created_at"
                    " ELSE now() END, rotated_at = CASE WHEN %s THEN now() END,"
                    " revoked_at = NULL",
                    (name, mosquitto_hash(password), rotated, rotated))
                change.issued.append(IssuedCredential(name, password))
    log.info("bridge credentials %s: %d changed, %d skipped", action,
             len(change.issued) + len(change.revoked), len(change.skipped))
    return change


def list_bridge_credentials(conn: psycopg.Connection[Any]) -> list[tuple[str, str, datetime,
                                                                        datetime | None,
                                                                        datetime | None]]:
    """(bridge, state, created_at, rotated_at, revoked_at) of the bridges' credentials."""
    rows = conn.execute("SELECT bridge, created_at, rotated_at, revoked_at"
                        " FROM bridge_credentials ORDER BY bridge").fetchall()
    return [(r[0], "revoked" if r[3] is not None else "active", r[1], r[2], r[3])
            for r in rows]


def _open_private(path: Path) -> TextIO:
    """Open ``path`` for writing, readable by its owner only (mode 600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # the file may have existed with wider permissions
    return os.fdopen(fd, "w", encoding="utf-8", newline="")


def write_passwords_csv(issued: Iterable[IssuedCredential], out: TextIO) -> None:
    """``device_id,username,password`` rows, with a header."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("device_id", "username", "password"))
    writer.writerows((c.device_id, c.username, c.password) for c in issued)


def write_passwords_file(issued: Iterable[IssuedCredential], path: Path) -> None:
    """Write the passwords CSV to ``path`` with mode 600."""
    with _open_private(path) as fh:
        write_passwords_csv(issued, fh)


def export_broker_files(accounts: Iterable[BrokerAccount],
                        directory: Path) -> tuple[Path, Path, Path]:
    """Write Mosquitto ``passwd`` and ``acl`` files of these accounts, and the
    dynamic-security plugin's ``dynamic-security.json`` binding each to its client id
    (mode 600): what deploy/mosquitto/mosquitto.conf reads."""
    accounts = list(accounts)
    directory.mkdir(parents=True, exist_ok=True)
    passwd, acl = render(accounts)
    paths = (directory / "passwd", directory / "acl", directory / "dynamic-security.json")
    for path, text in zip(paths, (passwd, acl, render_dynsec(accounts)), strict=True):
        with _open_private(path) as fh:
            fh.write(text)
    return paths


__all__ = [
    "CredentialChange",
    "CredentialInfo",
    "IssuedCredential",
    "broker_accounts",
    "device_write_topic",
    "export_broker_files",
    "generate_password",
    "issue",
    "issue_bridges",
    "list_bridge_credentials",
    "list_credentials",
    "revoke",
    "revoke_bridges",
    "rotate",
    "rotate_bridges",
    "write_passwords_csv",
    "write_passwords_file",
]
