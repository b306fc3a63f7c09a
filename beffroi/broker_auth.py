"""Mosquitto password, ACL and client-id binding files: Beffroi's own accounts, bridges, devices.

Passwords and topic rights live in Mosquitto's ``password_file`` and ``acl_file`` (reloaded on
SIGHUP). Those cannot tie a user to a client id, so any account could connect with another
client's id and take over its persistent session (the ingestor's, with its whole backlog).
Mosquitto's dynamic-security plugin can: each bound account is a plugin client with a
``clientid`` and no password, so the plugin refuses any other client id (CONNACK "not
authorised") and defers the password and ACL checks to the files. Every account is bound,
one connection per account, except the operator's ``beffroi-admin``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from devices.families import SEGMENTS, bridge_topics

# Mosquitto 2's password format: PBKDF2-HMAC-SHA512, 101 iterations, 12-byte salt.
_ITERATIONS = 101
_SALT_BYTES = 12


def mosquitto_hash(password: str, *, salt: bytes | None = None) -> str:
    """Hash a password the way ``mosquitto_passwd`` does (``$7$101$salt$hash``)."""
    salt = salt if salt is not None else os.urandom(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _ITERATIONS, 64)
    return f"$7${_ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def mosquitto_verify(password: str, hashed: str) -> bool:
    """Check a password against a ``$7$`` hash."""
    try:
        _, kind, iterations, salt_b64, digest_b64 = hashed.split("$")
    except ValueError:
        return False
    if kind != "7":
        return False
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt_b64),
                                 int(iterations), 64)
    return hmac.compare_digest(digest, base64.b64decode(digest_b64))


@dataclass(frozen=True)
class BrokerAccount:
    """A broker user: its password hash, the topics it may read or write, its client id.

    ``client_id`` is the only client id the account may connect with; None leaves it free
    (the operator's admin account only).
    """

    username: str
    password_hash: str
    read: tuple[str, ...] = field(default=())
    write: tuple[str, ...] = field(default=())
    client_id: str | None = None


#: Placeholder for the connection number in the user names of multi-connection accounts.
CONNECTION_PLACEHOLDER = "{n}"
ADMIN_USER = "beffroi-admin"
#: Topics of the dynamic-security plugin's control API (the admin account's only).
DYNSEC_CONTROL = "$CONTROL/dynamic-security/#"


def connection_user(template: str, n: int) -> str:
    """The user name of connection ``n`` of an account (``beffroi-ingest-{n}`` -> ``-0``...)."""
    return template.replace(CONNECTION_PLACEHOLDER, str(n))


def service_accounts(*, prefix: str, ingest_password: str, sim_password: str,
                     admin_password: str, ingest_user: str = "beffroi-ingest-{n}",
                     sim_user: str = "beffroi-sim-{n}", ingest_client_id: str = "beffroi-ingest",
                     ingest_connections: int = 16, sim_connections: int = 16,
                     bridge_prefix: str = "") -> list[BrokerAccount]:
    """Beffroi's own accounts, one per connection and each bound to its client id.

    Ingestor worker ``n`` is ``ingest_user`` with ``{n}`` replaced, client id
    ``{ingest_client_id}-{n}``, and reads every device and bridge topic; simulator
    connection ``n`` is ``sim_user`` with ``{n}`` replaced, client id = user name, and writes
    them. The admin account reads and writes everything, with any client id.
    """
    ingest = ingest_accounts(prefix=prefix, password=ingest_password, user=ingest_user,
                             client_id=ingest_client_id, connections=ingest_connections,
                             bridge_prefix=bridge_prefix)
    sim = sim_accounts(prefix=prefix, password=sim_password, user=sim_user,
                       connections=sim_connections, bridge_prefix=bridge_prefix)
    admin = BrokerAccount(ADMIN_USER, mosquitto_hash(admin_password),
                          read=("#", DYNSEC_CONTROL), write=("#", DYNSEC_CONTROL))
    return [*ingest, *sim, admin]


def _template(user: str) -> str:
    if CONNECTION_PLACEHOLDER not in user:
        raise ValueError(f"broker user name {user!r} needs {CONNECTION_PLACEHOLDER}: "
                         "each connection has an account of its own")
    return user


def ingest_accounts(*, prefix: str, password: str, user: str, client_id: str,
                    connections: int, bridge_prefix: str = "") -> list[BrokerAccount]:
    """The ingestor's accounts: worker ``n`` is ``user`` with ``{n}`` replaced, client id
    ``{client_id}-{n}``, and reads every device and bridge topic."""
    topics = (f"{prefix}/#", *bridge_topics(bridge_prefix))
    hashed = mosquitto_hash(password)
    return [BrokerAccount(connection_user(_template(user), n), hashed, read=topics,
                          client_id=f"{client_id}-{n}") for n in range(connections)]


def sim_accounts(*, prefix: str, password: str, user: str, connections: int,
                 bridge_prefix: str = "") -> list[BrokerAccount]:
    """The simulator's accounts: connection ``n`` is ``user`` with ``{n}`` replaced (and
    that client id), and writes every device and bridge topic: under the known segments
    only, like the devices, so that every topic it may publish reaches an ingestor worker
    (ingest/subscriptions.py)."""
    topics = (*(f"{prefix}/{s}/#" for s in SEGMENTS), *bridge_topics(bridge_prefix))
    hashed = mosquitto_hash(password)
    return [BrokerAccount(name, hashed, write=topics, client_id=name)
            for name in (connection_user(_template(user), n) for n in range(connections))]


@dataclass(frozen=True)
class Binding:
    """What the dynamic-security plugin holds for one account: its client id, its role."""

    client_id: str
    role: str


#: Roles made by Beffroi carry this prefix.
ROLE_PREFIX = "beffroi-subscribe-"
AclRule = dict[str, str | int | bool]


def subscribe_acls(read: Iterable[str]) -> list[AclRule]:
    """Subscriptions allowed within ``read`` (shared ones too), every other one refused.

    Mosquitto's ACL file grants every subscription and filters at delivery; this refuses
    them in the SUBACK instead.
    """
    allow: list[AclRule] = [
        {"acltype": "subscribePattern", "topic": t, "priority": 1, "allow": True}
        for topic in read for t in (topic, f"$share/+/{topic}")]
    deny: AclRule = {"acltype": "subscribePattern", "topic": "#", "priority": 0,
                     "allow": False}
    return [*allow, deny]


def role_name(acls: list[AclRule]) -> str:
    """A role's name, from its content: changed rules make a new role."""
    digest = hashlib.sha256(json.dumps(acls, sort_keys=True).encode()).hexdigest()
    return ROLE_PREFIX + digest[:12]


def dynsec_plan(accounts: Iterable[BrokerAccount]) -> tuple[dict[str, Binding],
                                                          dict[str, list[AclRule]]]:
    """User name -> binding of every bound account, and role name -> its ACL rules."""
    bindings: dict[str, Binding] = {}
    roles: dict[str, list[AclRule]] = {}
    for acc in accounts:
        if acc.client_id is None:
            continue
        acls = subscribe_acls(acc.read)
        name = role_name(acls)
        roles[name] = acls
        bindings[acc.username] = Binding(acc.client_id, name)
    return bindings, roles


def render_dynsec(accounts: Iterable[BrokerAccount]) -> str:
    """The dynamic-security plugin's file: one password-less client per bound account.

    Its roles only restrict subscriptions; every default access is denied, so the plugin
    defers the password check (a client without password) and every other ACL check to
    the password and ACL files.
    """
    bindings, roles = dynsec_plan(accounts)
    doc = {
        "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": False,
                             "subscribe": False, "unsubscribe": False},
        "clients": [{"username": user, "clientid": b.client_id,
                     "roles": [{"rolename": b.role}], "groups": []}
                    for user, b in sorted(bindings.items())],
        "groups": [],
        "roles": [{"rolename": name, "acls": acls} for name, acls in sorted(roles.items())],
    }
    return json.dumps(doc, indent=1) + "\n"


def render(accounts: Iterable[BrokerAccount]) -> tuple[str, str]:
    """The password file and ACL file for these accounts."""
    passwd: list[str] = []
    acl: list[str] = ["# Generated by Beffroi; edits are overwritten.", ""]
    seen: set[str] = set()
    for acc in accounts:
        if ":" in acc.username or "\n" in acc.username:
            raise ValueError(f"invalid broker user name {acc.username!r}")
        if acc.username in seen:
            raise ValueError(f"two broker accounts named {acc.username!r}")
        seen.add(acc.username)
        passwd.append(f"{acc.username}:{acc.password_hash}")
        acl.append(f"user {acc.username}")
        acl.extend(f"topic read {t}" for t in acc.read)
        acl.extend(f"topic write {t}" for t in acc.write)
        acl.append("")
    return "\n".join(passwd) + "\n", "\n".join(acl)


def write_files(passwd_file: Path, acl_file: Path, accounts: Iterable[BrokerAccount], *,
                dynsec_file: Path | None = None) -> None:
    """Atomically replace the broker's password and ACL files (and client-id bindings)."""
    accounts = list(accounts)
    passwd, acl = render(accounts)
    files = [(passwd_file, passwd), (acl_file, acl)]
    if dynsec_file is not None:
        files.append((dynsec_file, render_dynsec(accounts)))
    for path, text in files:
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        st = path.stat() if path.exists() else None
        if st is not None and os.geteuid() == 0:
            os.chown(tmp, st.st_uid, st.st_gid)
        tmp.replace(path)
