"""Per-device broker credentials against the real Mosquitto of the local stack.

``Stack.write_broker_auth`` rewrites *all* device accounts of the broker from the database
it is given. These tests give it the session's throwaway database, so while they run the
broker knows only the test devices' accounts: credentials provisioned from the developer's
own database (e.g. the demo city's) vanish from the broker until the next
``beffroi devices credentials sync`` (or ``beffroi stack up`` after a restart) there.
Beffroi's own accounts (ingest, sim, admin) are never affected.
"""

from __future__ import annotations

import asyncio
import csv
import json
import secrets
import stat
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

from beffroi import cli
from beffroi.broker_auth import connection_user, mosquitto_verify
from beffroi.endpoints import broker_address
from beffroi.settings import Settings
from beffroi.stack import Stack
from beffroi.stack.dynsec import DynsecControl, current_bindings
from devices import credentials as creds
from devices import store
from devices.registry import parse_registry
from ingest.service import BrokerConfig
from ingest.subscriptions import every_filter
from tests.integration.ingest_helpers import ingest_settings, running_ingestor
from tests.integration.mqtt_helpers import await_until, count

pytestmark = pytest.mark.stack

DEADLINE_S = 10.0
NOT_AUTHORIZED = 135


class Peer:
    """A paho MQTT v5 client driven by hand (``loop``), recording what it receives."""

    def __init__(self, settings: Settings, client_id: str, username: str, password: str):
        self.connack: Any = None
        self.pubacks: dict[int, Any] = {}
        self.subscribed = False
        self.messages: list[mqtt.MQTTMessage] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda _c, _u, msg: self.messages.append(msg)
        host, port = broker_address(settings)
        self.client.connect(host, port, keepalive=30)

    def _on_connect(self, _c: Any, _u: Any, _flags: Any, rc: Any, _props: Any) -> None:
        self.connack = rc

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: Any, _props: Any) -> None:
        self.pubacks[mid] = rc

    def _on_subscribe(self, _c: Any, _u: Any, _mid: int, rcs: Any, _props: Any) -> None:
        assert all(not rc.is_failure for rc in rcs), rcs
        self.subscribed = True

    def close(self) -> None:
        self.client.disconnect()


def pump(peers: list[Peer], done: Callable[[], bool], what: str) -> None:
    """Run the peers' network loops until ``done()``; fail after the deadline."""
    deadline = time.monotonic() + DEADLINE_S
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        for p in peers:
            p.client.loop(timeout=0.02)


def connect(settings: Settings, client_id: str, username: str, password: str) -> Peer:
    """Connect once and wait for the CONNACK (success or not)."""
    peer = Peer(settings, client_id, username, password)
    pump([peer], lambda: peer.connack is not None, f"CONNACK for {username}")
    return peer


def wait_connect_result(settings: Settings, uid: str, username: str, password: str, *,
                        accepted: bool) -> Peer:
    """Retry until the broker (reloading its files on SIGHUP) gives the expected answer."""
    deadline = time.monotonic() + DEADLINE_S
    attempt = 0
    while True:
        attempt += 1
        peer = connect(settings, username, username, password)  # bound: client id = user
        if peer.connack.is_failure != accepted:
            return peer
        if not peer.connack.is_failure:
            peer.close()
        if time.monotonic() > deadline:
            raise AssertionError(f"{username}: connect still {peer.connack} after reload")


@pytest.fixture
def registry(conn: psycopg.Connection[Any], uid: str) -> tuple[str, str, str]:
    """Two test devices (wifi AP = A, parking spot = B) plus an inactive one."""
    doc = {
        "sites": [{"id": f"sq-{uid}", "kind": "square", "name": "Test square", "insee": "62041"},
                  {"id": f"pz-{uid}", "kind": "parking_zone", "name": "Test zone",
                   "insee": "62041"}],
        "devices": [
            {"id": f"ap-{uid}", "family": "wifi_ap", "site_id": f"sq-{uid}", "name": "A"},
            {"id": f"spot-{uid}", "family": "parking_spot", "site_id": f"pz-{uid}",
             "name": "B"},
            {"id": f"off-{uid}", "family": "wifi_ap", "site_id": f"sq-{uid}", "name": "off",
             "active": False},
        ],
    }
    store.import_registry(conn, parse_registry(doc))
    return f"ap-{uid}", f"spot-{uid}", f"off-{uid}"


@pytest.fixture
def admin(stack: Stack, settings: Settings, uid: str) -> Iterator[Peer]:
    user, password = stack.mqtt_credentials("admin")
    peer = connect(settings, f"{uid}-admin", user, password)
    assert not peer.connack.is_failure, peer.connack
    yield peer
    peer.close()


def test_issue_rotate_revoke_in_the_database(conn: psycopg.Connection[Any],
                                             registry: tuple[str, str, str],
                                             settings: Settings) -> None:
    a, b, off = registry
    first = creds.issue(conn, [a, b, off, "no-such-device"])
    assert [c.device_id for c in first.issued] == [a, b]
    assert dict(first.skipped) == {off: "device is inactive", "no-such-device": "unknown device"}
    again = creds.issue(conn, [a])
    assert not again.issued and "already has active credentials" in again.skipped[0][1]

    def stored_hash(dev: str) -> str:
        row = conn.execute("SELECT password_hash FROM device_credentials WHERE device_id = %s",
                           (dev,)).fetchone()
        assert row is not None
        return str(row[0])

    pw_a = first.issued[0].password
    assert pw_a not in stored_hash(a) and mosquitto_verify(pw_a, stored_hash(a))
    rotated = creds.rotate(conn, [a])
    assert not mosquitto_verify(pw_a, stored_hash(a))
    assert mosquitto_verify(rotated.issued[0].password, stored_hash(a))
    accounts = {acc.username: acc for acc in creds.broker_accounts(conn, settings.topic_prefix)}
    assert accounts[a].write == (f"{settings.topic_prefix}/wifi/{a}/#",)
    assert accounts[b].write == (f"{settings.topic_prefix}/parking/{b}/#",)
    assert accounts[a].read == () and off not in accounts
    assert creds.revoke(conn, [b]).revoked == [b]
    assert b not in {acc.username for acc in creds.broker_accounts(conn, settings.topic_prefix)}
    assert creds.rotate(conn, [b]).skipped == [(b, "credentials are revoked (use generate)")]
    states = {c.device_id: c.state for c in creds.list_credentials(conn, [a, b])}
    assert states == {a: "active", b: "revoked"}
    assert [c.device_id for c in creds.issue(conn, [b]).issued] == [b]


def test_devices_publish_only_on_their_own_topics(
        conn: psycopg.Connection[Any], registry: tuple[str, str, str], db_url: str,
        settings: Settings, admin: Peer, uid: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    a, b, _ = registry
    prefix = settings.topic_prefix
    out = tmp_path / "passwords.csv"
    # Through the command: stores hashes, writes the CSV (mode 600), reloads Mosquitto.
    monkeypatch.setenv("BEFFROI_DATABASE_URL", db_url)
    assert cli.main(["devices", "credentials", "generate", a, b, "--output", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["device_id"] for r in rows] == [a, b]
    assert all(r["username"] == r["device_id"] for r in rows)
    password = {r["device_id"]: r["password"] for r in rows}

    admin.client.subscribe([(f"{prefix}/+/{a}/#", 1), (f"{prefix}/+/{b}/#", 1)])
    pump([admin], lambda: admin.subscribed, "SUBACK")
    dev_a = wait_connect_result(settings, uid, a, password[a], accepted=True)
    try:
        # Own topic: accepted and delivered.
        own = f"{prefix}/wifi/{a}/stats"
        info = dev_a.client.publish(own, b'{"clients": 3}', qos=1)
        pump([dev_a, admin], lambda: info.mid in dev_a.pubacks and len(admin.messages) == 1,
             "own publish delivered")
        assert not dev_a.pubacks[info.mid].is_failure
        assert admin.messages[0].topic == own and admin.messages[0].payload == b'{"clients": 3}'

        # B's topic: refused with PUBACK 135 (MQTT v5, QoS 1) and never delivered.
        foreign = f"{prefix}/parking/{b}/state"
        bad = dev_a.client.publish(foreign, b'{"state": "free"}', qos=1)
        pump([dev_a, admin], lambda: bad.mid in dev_a.pubacks, "PUBACK of foreign publish")
        assert dev_a.pubacks[bad.mid].value == NOT_AUTHORIZED
        # Barrier: a later message on A's topic arrives after anything routed before it.
        marker = dev_a.client.publish(own, b"marker", qos=1)
        pump([dev_a, admin], lambda: marker.mid in dev_a.pubacks
             and any(m.payload == b"marker" for m in admin.messages), "marker delivered")
        assert not dev_a.pubacks[marker.mid].is_failure
        assert [m.topic for m in admin.messages] == [own, own]
    finally:
        dev_a.close()

    # Wrong password: refused at connect.
    wrong = connect(settings, a, a, password[a] + "x")
    assert wrong.connack.is_failure
    assert wrong.connack.value in (134, 135)  # bad user name or password / not authorized

    # Revoked: A can no longer connect, B still can.
    assert cli.main(["devices", "credentials", "revoke", a]) == 0
    refused = wait_connect_result(settings, uid, a, password[a], accepted=False)
    assert refused.connack.is_failure
    dev_b = connect(settings, b, b, password[b])
    assert not dev_b.connack.is_failure
    dev_b.close()
    row = conn.execute("SELECT revoked_at FROM device_credentials WHERE device_id = %s",
                       (a,)).fetchone()
    assert row is not None and row[0] is not None


def test_export_for_an_external_broker(conn: psycopg.Connection[Any],
                                       registry: tuple[str, str, str], tmp_path: Path,
                                       settings: Settings) -> None:
    a, b, _ = registry
    creds.issue(conn, [a])
    passwd, acl, bindings = creds.export_broker_files(
        creds.broker_accounts(conn, settings.topic_prefix), tmp_path / "broker")
    assert stat.S_IMODE(passwd.stat().st_mode) == 0o600
    assert f"{a}:$7$" in passwd.read_text()
    assert f"user {a}\ntopic write {settings.topic_prefix}/wifi/{a}/#\n" in acl.read_text()
    assert f"user {b}\n" not in acl.read_text()
    # The export binds each account to its client id for the broker's dynamic-security plugin.
    doc = json.loads(bindings.read_text())
    assert stat.S_IMODE(bindings.stat().st_mode) == 0o600
    clients = {c["username"]: c for c in doc["clients"]}
    assert clients[a]["clientid"] == a and b not in clients
    assert all(c["clientid"] == c["username"] for c in doc["clients"])


# -- client-id bindings (a stolen client id must not take over a session) -------------------

async def test_a_stolen_client_id_is_refused_and_nothing_is_lost(
        conn: psycopg.Connection[Any], registry: tuple[str, str, str], db_url: str,
        stack: Stack, settings: Settings) -> None:
    """A device connecting with the ingestor's client id and a clean start would discard the
    ingestor's persistent session and its backlog: the broker must refuse it."""
    a, _, _ = registry
    prefix = settings.topic_prefix
    password = creds.issue(conn, [a]).issued[0].password
    stack.write_broker_auth(creds.broker_accounts(conn, prefix))
    # The real ingest account of the last worker slot, so a developer's ingestor is not hit.
    worker = settings.ingest_max_workers - 1
    victim = f"{settings.ingest_client_id}-{worker}"
    host, port = broker_address(settings)
    broker = BrokerConfig(host, port, *stack.mqtt_credentials("ingest"))
    s = ingest_settings(settings, topic_prefix=prefix, ingest_client_id=settings.ingest_client_id)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)

    def rows() -> int:
        return count(db_url, "wifi_ap_stats", "device_id = %s", (a,))

    async def scenario() -> None:
        async with running_ingestor(stack, s, db_url, worker=worker, broker=broker,
                                    purge=False):
            pass  # leaves its persistent session (subscriptions, then a backlog)
        try:
            # Ingestor stopped: the device publishes 20 readings, queued in that session.
            dev = await asyncio.to_thread(wait_connect_result, settings, "", a, password,
                                          accepted=True)
            infos = [dev.client.publish(
                f"{prefix}/wifi/{a}/stats",
                json.dumps({"ts": (start + timedelta(minutes=i)).isoformat(), "clients": i}),
                qos=1) for i in range(20)]
            await asyncio.to_thread(pump, [dev], lambda: all(
                i.mid in dev.pubacks for i in infos), "20 PUBACKs")
            assert not any(dev.pubacks[i.mid].is_failure for i in infos)
            dev.close()
            # The same device, then the simulator, with the ingestor's client id and a clean
            # start: refused, "not authorised".
            thief = await asyncio.to_thread(connect, settings, victim, a, password)
            assert thief.connack.value == NOT_AUTHORIZED, thief.connack
            sim_user, sim_pw = stack.mqtt_credentials("sim")
            sim = await asyncio.to_thread(connect, settings, victim,
                                          connection_user(sim_user, 0), sim_pw)
            assert sim.connack.value == NOT_AUTHORIZED, sim.connack
            assert rows() == 0
        finally:
            # Restarted, the ingestor finds its whole backlog (then purges its session).
            async with running_ingestor(stack, s, db_url, worker=worker, broker=broker):
                await await_until(lambda: asyncio.to_thread(lambda: rows() == 20),
                                  timeout=30, what="the 20 readings stored")

    await scenario()


def test_ingest_accounts_hold_every_split_and_simulators_publish_only_inside(
        stack: Stack, settings: Settings) -> None:
    """The real accounts: an ingestor worker may subscribe to the filters of every number
    of workers and mode; a simulator connection may not publish under an unknown segment,
    the one topic the split between workers leaves out (docs/ingest.md, Subscriptions)."""
    stack.write_broker_auth()  # the service accounts as this code writes them
    worker = settings.ingest_max_workers - 1  # slots a developer's processes do not use
    user, password = stack.mqtt_credentials("ingest")
    filters = every_filter(prefix=settings.topic_prefix, bridge_prefix=settings.bridge_prefix,
                           share_group=settings.ingest_share_group)
    ingest = connect(settings, f"{settings.ingest_client_id}-{worker}",
                     connection_user(user, worker), password)  # clean start: no session kept
    sim_user, sim_pw = stack.mqtt_credentials("sim")
    sim_name = connection_user(sim_user, settings.sim_max_connections - 1)
    sim = connect(settings, sim_name, sim_name, sim_pw)
    try:
        assert not ingest.connack.is_failure and not sim.connack.is_failure
        ingest.client.subscribe([(f, SubscribeOptions(qos=1)) for f in filters])
        pump([ingest], lambda: ingest.subscribed, "SUBACK for every filter")
        inside = sim.client.publish(f"{settings.topic_prefix}/grid/x-m1/reading", b"{}", qos=1)
        pump([sim], lambda: inside.mid in sim.pubacks, "PUBACK inside")
        assert not sim.pubacks[inside.mid].is_failure
        deadline = time.monotonic() + DEADLINE_S
        while True:  # until the broker has reloaded the files written above
            outside = sim.client.publish(f"{settings.topic_prefix}/bogus/x/y", b"{}", qos=1)
            pump([sim], lambda: outside.mid in sim.pubacks, "PUBACK outside")  # noqa: B023
            if sim.pubacks[outside.mid].value == NOT_AUTHORIZED or time.monotonic() > deadline:
                break
        assert sim.pubacks[outside.mid].value == NOT_AUTHORIZED
    finally:
        ingest.close()
        sim.close()


def test_every_account_is_bound_to_its_client_ids(stack: Stack, settings: Settings) -> None:
    ingest_user, ingest_pw = stack.mqtt_credentials("ingest")
    sim_user, sim_pw = stack.mqtt_credentials("sim")
    admin_user, admin_pw = stack.mqtt_credentials("admin")
    cases = [
        # (client id, user, password, accepted)
        (connection_user(sim_user, 1), connection_user(sim_user, 1), sim_pw, True),
        (connection_user(sim_user, 2), connection_user(sim_user, 1), sim_pw, False),
        ("beffroi-sim", connection_user(sim_user, 0), sim_pw, False),
        (f"{settings.ingest_client_id}-0", connection_user(ingest_user, 1), ingest_pw, False),
        ("anything", connection_user(ingest_user, 0), ingest_pw, False),
        (f"admin-{secrets.token_hex(3)}", admin_user, admin_pw, True),  # the operator's
    ]
    for client_id, user, password, accepted in cases:
        peer = connect(settings, client_id, user, password)
        assert peer.connack.is_failure != accepted, (client_id, user, peer.connack)
        if accepted:
            peer.close()
        else:
            assert peer.connack.value == NOT_AUTHORIZED


def test_bindings_follow_the_accounts_without_a_restart(
        conn: psycopg.Connection[Any], registry: tuple[str, str, str], stack: Stack,
        settings: Settings) -> None:
    a, b, _ = registry
    pid = stack.broker().pid()

    def bindings() -> dict[str, str | None]:
        """User name -> bound client id, as the running broker holds it."""
        host, port = broker_address(settings)
        ctl = DynsecControl(host, port, *stack.mqtt_credentials("admin"))
        try:
            return {u: None if b is None else b.client_id
                    for u, b in current_bindings(ctl).items()}
        finally:
            ctl.close()

    pw_a = creds.issue(conn, [a]).issued[0].password
    stack.write_broker_auth(creds.broker_accounts(conn, settings.topic_prefix))
    assert bindings()[a] == a and b not in bindings()
    wait_connect_result(settings, "", a, pw_a, accepted=True).close()
    assert connect(settings, b, a, pw_a).connack.value == NOT_AUTHORIZED
    # A device added later is bound as soon as it gets an account.
    pw_b = creds.issue(conn, [b]).issued[0].password
    creds.revoke(conn, [a])
    stack.write_broker_auth(creds.broker_accounts(conn, settings.topic_prefix))
    assert bindings()[b] == b
    wait_connect_result(settings, "", b, pw_b, accepted=True).close()
    assert connect(settings, a, b, pw_b).connack.value == NOT_AUTHORIZED
    # A revoked one keeps its (harmless) binding but no longer gets in.
    wait_connect_result(settings, "", a, pw_a, accepted=False)
    assert stack.broker().pid() == pid  # reloaded, not restarted


# -- bridge accounts ------------------------------------------------------------------------

LORA_UP = "application/1/device/0011223344556677/event/up"
TIC_FRAME = "teleinfo/012345678901"


@pytest.mark.parametrize(("bridge", "own", "foreign"), [
    ("chirpstack", LORA_UP, TIC_FRAME), ("teleinfo", TIC_FRAME, LORA_UP)])
def test_bridge_accounts_own_their_topic_tree(
        bridge: str, own: str, foreign: str, db_url: str, settings: Settings,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = f"{settings.bridge_prefix}/" if settings.bridge_prefix else ""
    out = tmp_path / "bridge.csv"
    monkeypatch.setenv("BEFFROI_DATABASE_URL", db_url)
    assert cli.main(["devices", "credentials", "generate", "--bridge", bridge, "--force",
                     "--output", str(out)]) == 0
    with out.open(newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["device_id"] == row["username"] == bridge
    peer = wait_connect_result(settings, "", bridge, row["password"], accepted=True)
    sub_results: list[Any] = []
    peer.client.on_subscribe = lambda _c, _u, _m, rcs, _p: sub_results.extend(rcs)
    try:
        results = {}
        for topic in (root + own, root + foreign, f"{settings.topic_prefix}/wifi/x/stats",
                      own if root else f"other/{own}"):
            mid = peer.client.publish(topic, b"{}", qos=1).mid
            pump([peer], lambda: mid in peer.pubacks, f"PUBACK on {topic}")  # noqa: B023
            results[topic] = peer.pubacks[mid]
        first, *others = results.values()
        assert not first.is_failure, results  # its own tree
        assert all(rc.value == NOT_AUTHORIZED for rc in others), results
        # It may read its own tree (ChirpStack takes downlink commands there), no other.
        peer.client.subscribe([(root + own.split("/")[0] + "/#", 1),
                               (root + foreign.split("/")[0] + "/#", 1),
                               (f"{settings.topic_prefix}/#", 1)])
        pump([peer], lambda: len(sub_results) == 3, "SUBACK")
        assert [rc.is_failure for rc in sub_results] == [False, True, True], sub_results
    finally:
        peer.close()
    # Bound to its own client id: any other is refused.
    other = "chirpstack" if bridge == "teleinfo" else "teleinfo"
    for cid in (other, f"{bridge}-2", f"{settings.ingest_client_id}-0"):
        assert connect(settings, cid, bridge, row["password"]).connack.value == NOT_AUTHORIZED
    # Revoked: no account any more.
    assert cli.main(["devices", "credentials", "revoke", "--bridge", bridge]) == 0
    wait_connect_result(settings, "", bridge, row["password"], accepted=False)
