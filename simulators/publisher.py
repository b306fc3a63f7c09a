"""Publishing a stream to the broker with paho-mqtt, paced, with progress and a summary.

All connections are driven from the calling thread (paho's external-loop API with a
selector), so hundreds of per-device connections need no thread each, and Ctrl-C lands in
one place. Two ways to connect:

- ``pool``: a few connections with the simulator's broker accounts (connection n:
  ``beffroi-sim-<n>``), messages spread over them by topic (so each device's messages stay
  in order);
- ``per-device``: one connection per device, user name = device id, with the device's own
  password; LoRaWAN uplinks and Linky frames (which in reality come from a network server and
  a TIC bridge) and messages of unknown devices go through one connection with the
  simulator's account ``beffroi-sim-0``.

The broker binds every account to one client id, its user name (docs/registry.md), so a
connection's client id is its user name unless ``client_ids`` names another (for the admin
account, which is not bound).

QoS 1 publishes count as sent when the broker acknowledged them; the number unacknowledged
is bounded (backpressure).
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from beffroi.broker_auth import connection_user
from simulators.model import SimMessage
from simulators.scenario import add_elapsed

log = logging.getLogger(__name__)

MAX_UNACKED = 5000  # messages in flight over all connections before publishing waits
INFLIGHT_PER_CONNECTION = 1000  # paho's QoS 1 window per connection
SIM_KEY = "sim"


class PublishError(RuntimeError):
    """Connections failed (refused credentials, unreachable broker)."""


@dataclass
class RunStats:
    """What a run sent; updated while it runs."""

    sent: Counter[str] = field(default_factory=Counter)  # per family
    faults: Counter[str] = field(default_factory=Counter)
    acked: int = 0
    started: float = field(default_factory=time.monotonic)
    last_offset: float = 0.0
    interrupted: bool = False
    unacked_at_end: int = 0

    @property
    def total(self) -> int:
        """Messages handed to the broker connections."""
        return sum(self.sent.values())

    def rate(self) -> float:
        """Messages per second since the start."""
        return self.total / max(1e-6, time.monotonic() - self.started)


class _Conn:
    def __init__(self, key: str, username: str, password: str, client_id: str) -> None:
        self.key = key
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(username, password)
        self.client.max_inflight_messages_set(INFLIGHT_PER_CONNECTION)
        self.client.max_queued_messages_set(0)
        self.connack: Any = None
        self.sock: Any = None


class Fleet:
    """A set of MQTT connections driven by one thread."""

    def __init__(self, host: str, port: int, accounts: Mapping[str, tuple[str, str]], *,
                 client_ids: Mapping[str, str] | None = None) -> None:
        self.host, self.port = host, port
        self.conns: dict[str, _Conn] = {}
        self.selector = selectors.DefaultSelector()
        self.unacked = 0
        self.acked = 0
        self._last_misc = 0.0
        for key, (user, password) in sorted(accounts.items()):
            conn = _Conn(key, user, password, (client_ids or {}).get(key, user))
            conn.client.on_connect = self._on_connect(conn)
            conn.client.on_publish = self._on_publish
            self.conns[key] = conn

    def _on_connect(self, conn: _Conn) -> Any:
        def cb(client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
            conn.connack = rc
        return cb

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        self.unacked -= 1
        self.acked += 1

    def connect(self, *, timeout: float = 30.0) -> None:
        """Open every connection; raise ``PublishError`` if any is refused or times out."""
        try:
            for conn in self.conns.values():
                conn.client.connect(self.host, self.port, keepalive=60)
                conn.sock = conn.client.socket()
                self.selector.register(conn.sock, selectors.EVENT_READ, conn)
        except OSError as exc:
            self.close()
            raise PublishError(f"cannot reach the broker at {self.host}:{self.port}: {exc}"
                               ) from exc
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump(0.05)
            if all(c.connack is not None for c in self.conns.values()):
                break
        refused = [f"{c.key} ({c.connack})" for c in self.conns.values()
                   if c.connack is None or c.connack.is_failure]
        if refused:
            self.close()
            shown = ", ".join(refused[:5]) + (" ..." if len(refused) > 5 else "")
            raise PublishError(f"{len(refused)} of {len(self.conns)} connection(s) refused or "
                               f"unanswered: {shown}")
        log.info("connected %d MQTT connection(s) to %s:%d", len(self.conns), self.host,
                 self.port)

    def publish(self, key: str, m: SimMessage) -> None:
        """Queue one message on connection ``key``."""
        props = None
        if m.content_type:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ContentType = m.content_type
        self.unacked += 1
        info = self.conns[key].client.publish(m.topic, m.payload, qos=m.qos, properties=props)
        if info.rc != mqtt.MQTT_ERR_SUCCESS and info.rc != mqtt.MQTT_ERR_NO_CONN:
            self.unacked -= 1
            raise PublishError(f"publish on {m.topic} failed: {mqtt.error_string(info.rc)}")

    def pump(self, timeout: float) -> None:
        """Do pending network I/O for up to ``timeout`` seconds."""
        for conn in self.conns.values():
            if conn.sock is not None and conn.client.want_write():
                conn.client.loop_write()
        for key, _ in self.selector.select(timeout=max(0.0, timeout)):
            conn = key.data
            conn.client.loop_read()
        now = time.monotonic()
        if now - self._last_misc >= 1.0:
            self._last_misc = now
            for conn in self.conns.values():
                conn.client.loop_misc()

    def drain(self, timeout: float) -> bool:
        """Wait until every publish is acknowledged (QoS 1) or written (QoS 0)."""
        deadline = time.monotonic() + timeout
        while self.unacked > 0 and time.monotonic() < deadline:
            self.pump(0.05)
        return self.unacked <= 0

    def close(self) -> None:
        """Disconnect everything."""
        for conn in self.conns.values():
            if conn.sock is not None:
                try:
                    conn.client.disconnect()
                    conn.client.loop_write()
                except (OSError, ValueError):
                    pass
                with contextlib.suppress(KeyError, ValueError):
                    self.selector.unregister(conn.sock)
                conn.sock = None
        self.selector.close()


class Router:
    """Which connection sends a message."""

    def __init__(self, *, mode: str, pool_size: int, prefix: str,
                 device_ids: Iterable[str] = ()) -> None:
        self.mode = mode
        self.pool_size = pool_size
        self.prefix = prefix + "/"
        self.devices = frozenset(device_ids)

    def key(self, m: SimMessage) -> str:
        """The connection key for ``m``."""
        if self.mode == "per-device":
            if m.device_id in self.devices and m.topic.startswith(self.prefix):
                return m.device_id or SIM_KEY
            return SIM_KEY
        return f"{SIM_KEY}-{zlib.crc32(m.topic.encode()) % self.pool_size}"


def accounts_for(*, mode: str, pool_size: int, sim: tuple[str, str],
                 device_passwords: Mapping[str, str] | None = None,
                 first: int = 0) -> dict[str, tuple[str, str]]:
    """Connection key -> (user, password) of a fleet.

    ``sim`` is the simulator's user name template (``{n}``: the connection number) and
    password; the fleet's connections are numbered from ``first``.
    """
    user, password = sim
    if mode == "per-device":
        out = {SIM_KEY: (connection_user(user, first), password)}
        out.update({d: (d, pw) for d, pw in (device_passwords or {}).items()})
        return out
    return {f"{SIM_KEY}-{i}": (connection_user(user, first + i), password)
            for i in range(pool_size)}


def _fmt_offset(seconds: float) -> str:
    s = int(seconds)
    return f"+{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s"


def progress_line(stats: RunStats, sim_start: datetime | None) -> str:
    """One progress line: simulated clock, counts per family, rate."""
    clock = _fmt_offset(stats.last_offset)
    if sim_start is not None:
        at = add_elapsed(sim_start, stats.last_offset)
        clock = f"{at.strftime('%Y-%m-%d %H:%M:%S%z')} ({clock})"
    fams = ", ".join(f"{f} {n}" for f, n in sorted(stats.sent.items()))
    faults = sum(stats.faults.values())
    return (f"sim {clock} | sent {stats.total} ({fams}) | {stats.rate():.0f} msg/s"
            + (f" | faults {faults}" if faults else ""))


def pacer(t0: float, speed: float | None, clock_start: datetime | None,
          wall_now: datetime) -> Callable[[float], float] | None:
    """When (monotonic) the message at ``offset`` s is due; None: as fast as possible.

    ``t0`` is the monotonic time matching ``wall_now``. With ``clock_start`` (the simulated
    start), a message is never due before the wall clock reaches its simulated time.
    """
    if clock_start is None:
        return None if speed is None else (lambda offset: t0 + offset / speed)
    start = t0 + (clock_start - wall_now).total_seconds()
    if speed is None:
        return lambda offset: start + offset
    return lambda offset: max(t0 + offset / speed, start + offset)


def publish_stream(messages: Iterable[SimMessage], fleet: Fleet, router: Router, *,
                   speed: float | None, sim_start: datetime | None = None,
                   stop: threading.Event | None = None, progress_s: float = 5.0,
                   drain_timeout: float = 60.0, follow_clock: bool = False) -> RunStats:
    """Publish ``messages`` paced at ``speed`` (None: as fast as possible).

    With ``follow_clock`` (and ``sim_start``), no message goes out before its simulated
    time: the past is replayed at ``speed``, then the run follows the wall clock. This is
    how a demo shows today's data, which per-client rules (24 h) and the ingestor's
    future-time check both accept.
    Stops early when ``stop`` is set or on Ctrl-C (``stats.interrupted``); always waits up
    to ``drain_timeout`` for acknowledgements of what was sent, then returns the stats.
    """
    stats = RunStats()
    t0 = time.monotonic()
    due_at = pacer(t0, speed, sim_start if follow_clock else None, datetime.now(UTC))
    next_progress = t0 + progress_s
    try:
        for m in messages:
            if due_at is not None:
                due = due_at(m.offset)
                while True:
                    now = time.monotonic()
                    if stop is not None and stop.is_set():
                        break
                    if now >= due:
                        break
                    fleet.pump(min(due - now, 0.05))
            if stop is not None and stop.is_set():
                stats.interrupted = True
                break
            fleet.publish(router.key(m), m)
            stats.sent[m.family] += 1
            if m.fault:
                stats.faults[m.fault] += 1
            stats.last_offset = m.offset
            if fleet.unacked >= MAX_UNACKED or stats.total % 200 == 0:
                fleet.pump(0)
                while fleet.unacked >= MAX_UNACKED:
                    fleet.pump(0.05)
            now = time.monotonic()
            if now >= next_progress:
                next_progress = now + progress_s
                log.info("%s", progress_line(stats, sim_start))
    except KeyboardInterrupt:
        stats.interrupted = True
        log.warning("interrupted: waiting for the broker to acknowledge what was sent")
    try:
        fleet.drain(drain_timeout if not stats.interrupted else min(drain_timeout, 5.0))
    except KeyboardInterrupt:
        stats.interrupted = True
    stats.acked = fleet.acked
    stats.unacked_at_end = max(0, fleet.unacked)
    return stats


__all__ = [
    "Fleet",
    "PublishError",
    "Router",
    "RunStats",
    "accounts_for",
    "pacer",
    "progress_line",
    "publish_stream",
]
