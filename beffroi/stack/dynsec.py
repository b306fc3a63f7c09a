"""Apply client-id bindings to a running broker through the dynamic-security control API.

The plugin reads its file at start only (a SIGHUP does not reload it), so a running broker
learns new bindings from ``$CONTROL/dynamic-security/v1`` commands sent with the admin
account; the plugin then saves its file itself.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import Mapping
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from beffroi.broker_auth import AclRule, Binding

log = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = CONTROL_TOPIC + "/response"


class DynsecError(RuntimeError):
    """The broker did not answer, or refused a command."""


class DynsecControl:
    """One admin connection sending commands and waiting for each answer in turn."""

    def __init__(self, host: str, port: int, username: str, password: str, *,
                 timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._answer: list[Any] = []
        self._got = threading.Event()
        self._ready = threading.Event()
        self._connack: Any = None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"beffroi-admin-{secrets.token_hex(4)}",
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_a: self._ready.set()
        self.client.on_message = self._on_message
        try:
            self.client.connect(host, port, keepalive=30)
        except OSError as exc:
            raise DynsecError(f"cannot reach the broker at {host}:{port}: {exc}") from exc
        self.client.loop_start()
        if not self._ready.wait(timeout):
            self.close()
            raise DynsecError(f"no answer from the broker's admin account ({self._connack})")

    def _on_connect(self, client: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self._connack = rc
        if not rc.is_failure:
            client.subscribe(RESPONSE_TOPIC, qos=1)

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self._answer.append(json.loads(msg.payload))
        self._got.set()

    def run(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send commands in one message; return the plugin's responses, in order."""
        self._got.clear()
        self._answer.clear()
        self.client.publish(CONTROL_TOPIC, json.dumps({"commands": commands}), qos=1)
        if not self._got.wait(self.timeout):
            raise DynsecError("the broker did not answer on the dynamic-security control "
                              "topic: is its plugin loaded (`beffroi stack down` then `up`)?")
        responses: list[dict[str, Any]] = self._answer[0].get("responses", [])
        return responses

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


def current_bindings(ctl: DynsecControl) -> dict[str, Binding | None]:
    """User name -> its binding (None: the plugin knows the user without a client id)."""
    (resp,) = ctl.run([{"command": "listClients", "verbose": True, "count": -1}])
    if resp.get("error"):
        raise DynsecError(f"listClients: {resp['error']}")
    out: dict[str, Binding | None] = {}
    for c in resp["data"]["clients"]:
        roles = [r["rolename"] for r in c.get("roles", [])]
        cid = c.get("clientid")
        out[c["username"]] = Binding(cid, roles[0] if len(roles) == 1 else "") if cid else None
    return out


def current_roles(ctl: DynsecControl) -> set[str]:
    """Names of the roles the plugin holds."""
    (resp,) = ctl.run([{"command": "listRoles", "verbose": False, "count": -1}])
    if resp.get("error"):
        raise DynsecError(f"listRoles: {resp['error']}")
    return set(resp["data"]["roles"])


def sync(ctl: DynsecControl, bindings: Mapping[str, Binding],
         roles: Mapping[str, list[AclRule]]) -> int:
    """Create or fix the ``bindings`` and their roles; return the number of commands applied.

    Call it before the password file gains new accounts, so that no account is ever usable
    unbound. Bindings of accounts that left are kept until the broker restarts: without a
    password entry they let nobody in, whereas deleting them could race the reload.
    """
    have, have_roles = current_bindings(ctl), current_roles(ctl)
    commands: list[dict[str, Any]] = [
        {"command": "createRole", "rolename": name, "acls": acls}
        for name, acls in sorted(roles.items()) if name not in have_roles]
    for user, b in sorted(bindings.items()):
        fields = {"username": user, "clientid": b.client_id, "roles": [{"rolename": b.role}]}
        if user not in have:
            commands.append({"command": "createClient", **fields})
        elif have[user] != b:
            commands.append({"command": "modifyClient", **fields})
    if not commands:
        return 0
    errors = [f"{c['command']} {c.get('username') or c.get('rolename')}: {r['error']}"
              for c, r in zip(commands, ctl.run(commands), strict=True) if r.get("error")]
    if errors:
        raise DynsecError("; ".join(errors[:5]))
    log.info("client-id bindings: %d change(s) applied to the running broker", len(commands))
    return len(commands)
