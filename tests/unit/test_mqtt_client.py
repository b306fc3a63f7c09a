"""The ingestor's MQTT client over a real socket, against a scripted server: what it sends,
when it acknowledges, how it stops reading, and how it ends a connection (with which reason)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from devices import mqttwire as w
from ingest.mqtt import ConnectRefused, MqttSubscriber, SubscriptionRefused
from ingest.mqtt.client import Backoff
from tests.unit.mqtt_peer import EOF, Peer, PeerSession, scripted_broker

Submitted = list[tuple[str, bytes, int, dict[str, Any]]]


def subscriber(port: int, futures: Callable[[], asyncio.Future[None]], got: Submitted,
               **kw: Any) -> MqttSubscriber:
    def submit(topic: str, payload: bytes, qos: int, props: dict[str, Any]
               ) -> asyncio.Future[None]:
        got.append((topic, payload, qos, props))
        return futures()

    options: dict[str, Any] = {"receive_maximum": 100, "session_expiry_s": 3600,
                               "topics": ["city/#"]} | kw
    sub = MqttSubscriber(host="127.0.0.1", port=port, username="ingest", password="secret",
                         client_id="beffroi-ingest-0", submit=submit, **options)
    sub.backoff.first = 0.05
    return sub


async def until(cond: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def started(peer: Peer, sub: MqttSubscriber, **handshake: Any) -> PeerSession:
    """Start ``sub`` against the scripted broker, which answers its CONNECT and SUBSCRIBE."""
    start = asyncio.ensure_future(sub.start())
    session = await peer.next_session()
    await session.handshake(**handshake)
    await start
    return session


def pub(mid: int, payload: bytes = b"{}", **kw: Any) -> bytes:
    return w.publish_packet(f"city/x/{mid}/s", payload, packet_id=mid, **kw)


async def test_connect_subscribe_and_stop_bytes() -> None:
    loop = asyncio.get_running_loop()
    async with scripted_broker() as peer:
        sub = subscriber(peer.port, loop.create_future, [], topics=["$share/g/city/#", "a/#"],
                         stale_topics=["city/#"], receive_maximum=20_000,
                         session_expiry_s=604_800, max_packet_size=1 << 20)
        start = asyncio.ensure_future(sub.start())
        session = await peer.next_session()
        connect, filters = await session.handshake(reasons=(1, 1))
        await start
        assert connect == w.Connect(
            5, False, 30, {"session_expiry_interval": 604_800, "receive_maximum": 20_000,
                           "maximum_packet_size": 1 << 20},
            "beffroi-ingest-0", "ingest", b"secret")
        assert filters == ["$share/g/city/#", "a/#"]
        assert await session.expect(w.UNSUBSCRIBE) == b"\x00\x02\x00\x00\x06city/#"
        assert sub.connected
        session.close_on_disconnect = False
        stopping = asyncio.ensure_future(sub.stop())
        assert await session.expect(w.DISCONNECT) == b""  # reason 0: the session stays
        await asyncio.sleep(0.1)
        assert not stopping.done()  # until the broker, having read it all, closes
        session.close()
        await asyncio.wait_for(stopping, 2)
        assert not sub.connected


async def test_pubacks_leave_after_their_commit_in_commit_order() -> None:
    loop = asyncio.get_running_loop()
    first, second = loop.create_future(), loop.create_future()
    batches = iter([first, first, first, second, second])
    got: Submitted = []
    async with scripted_broker() as peer:
        sub = subscriber(peer.port, lambda: next(batches), got)
        session = await started(peer, sub)
        session.send(pub(1) + pub(2, dup=True) + pub(3) + w.publish_packet(
            "city/x/q0/s", b"q0", qos=0) + pub(
            4, b"[]", properties={"content_type": "application/senml+json"}))
        await until(lambda: len(got) == 5, "five messages")
        assert got[3] == ("city/x/q0/s", b"q0", 0, {})
        assert got[4][3] == {"content_type": "application/senml+json"}
        assert sub.redelivered == 1 and sub.gate.messages == 5
        second.set_result(None)  # the later batch commits first: its PUBACK leaves first
        first.set_result(None)
        assert await session.expect(w.PUBACK) == b"\x00\x04"
        for mid in (1, 2, 3):
            assert await session.expect(w.PUBACK) == bytes([0, mid])
        assert sub.gate.messages == 0 and sub.gate.bytes == 0
        await sub.stop()


async def test_a_failed_batch_is_never_acknowledged() -> None:
    loop = asyncio.get_running_loop()
    failed, ok = loop.create_future(), loop.create_future()
    batches = iter([failed, failed, ok])
    async with scripted_broker() as peer:
        sub = subscriber(peer.port, lambda: next(batches), [], receive_maximum=2)
        session = await started(peer, sub)
        session.send(pub(1) + pub(2))
        await until(lambda: sub.gate.messages == 2, "two messages in flight")
        assert not sub.gate.is_open
        failed.set_exception(RuntimeError("batch failed"))
        await until(lambda: sub.gate.is_open, "the gate to reopen")
        session.send(pub(3))
        await until(lambda: sub.received == 3, "the third message")
        ok.set_result(None)
        assert await session.expect(w.PUBACK) == b"\x00\x03"  # 1 and 2 never
        await sub.stop()


async def test_reading_stops_at_the_inflight_bound_and_resumes_after_commit(
        read_pause_s: float = 0.0) -> None:
    """The client pauses the transport: the peer's writes back up (TCP backpressure) while
    the messages wait for their commit, and flow again once it is done."""
    loop = asyncio.get_running_loop()
    commit = loop.create_future()
    n, size = 4000, 5000  # 20 MB: more than the kernel's socket buffers hold
    async with scripted_broker() as peer:
        sub = subscriber(peer.port, lambda: commit, [], receive_maximum=5,
                         read_pause_s=read_pause_s)
        session = await started(peer, sub)
        session.send(b"".join(pub(i) for i in range(1, 6)))
        await until(lambda: sub.received == 5, "five messages")
        assert not sub.gate.is_open
        body = b"x" * size
        session.send(b"".join(pub(i % 65_535 + 1, body) for i in range(n)))
        transport = session.writer.transport
        # A client that kept reading would drain this in well under a second.
        with pytest.raises(AssertionError, match="a drain"):
            await until(lambda: transport.get_write_buffer_size() == 0, "a drain", timeout=2)
        assert sub.received == 5
        commit.set_result(None)  # PUBACKs out, the gate reopens, reading resumes
        await until(lambda: sub.received == 5 + n, "the rest", timeout=60)
        assert transport.get_write_buffer_size() == 0
        assert sub.gate.closures >= 1
        await sub.stop()


async def test_the_same_with_reads_in_bursts() -> None:
    """Resting after short reads does not get in the way of the in-flight bound."""
    await test_reading_stops_at_the_inflight_bound_and_resumes_after_commit(read_pause_s=0.005)


async def test_after_a_short_read_the_next_read_waits_and_takes_what_came_meanwhile() -> None:
    """Messages written one by one while the client rests are read in one system call."""
    loop = asyncio.get_running_loop()
    got: Submitted = []
    async with scripted_broker() as peer:
        sub = subscriber(peer.port, loop.create_future, got, read_pause_s=1.0)
        session = await started(peer, sub)
        session.send(pub(1))
        await until(lambda: sub.received == 1, "the first message")
        reads = sub.reads
        for mid in range(2, 52):  # fifty writes, well within the rest
            session.send(pub(mid))
            await session.writer.drain()
        await until(lambda: sub.received == 51, "the fifty messages", timeout=10)
        assert sub.reads == reads + 1
        assert [int(t.split("/")[2]) for t, *_ in got] == list(range(1, 52))
        await sub.stop()


async def test_without_a_rest_each_message_written_alone_is_read_alone() -> None:
    """The other side of the test above: with ``read_pause_s=0`` the client reads at once."""
    loop = asyncio.get_running_loop()
    async with scripted_broker() as peer:
        sub = subscriber(peer.port, loop.create_future, [], read_pause_s=0.0)
        session = await started(peer, sub)
        reads = sub.reads
        for mid in range(1, 11):
            session.send(pub(mid))
            await until(lambda m=mid: sub.received == m, f"message {mid}")  # type: ignore[misc]
        assert sub.reads == reads + 10
        await sub.stop()


@pytest.mark.parametrize(("packet", "reason"), [
    (w.publish_packet("city/x/1/s", b"x" * 2000, packet_id=1), 0x95),
    (b"\x32\x06\x00\x01t\x00\x01\x05", 0x81),  # properties past the end
    (w.connect_packet("x", "u", "p"), 0x82),      # a packet a server never sends
])  # fmt: skip
async def test_a_bad_packet_ends_the_connection_with_its_reason_then_reconnects(
        packet: bytes, reason: int, caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    async with scripted_broker() as peer:
        sub = subscriber(peer.port, loop.create_future, [], max_packet_size=1024)
        session = await started(peer, sub)
        session.send(packet)
        assert await session.expect(w.DISCONNECT) == bytes([reason, 0])
        assert await session.expect(EOF[0]) == b""
        again = await peer.next_session()  # reconnects, with backoff
        await again.handshake(session_present=True)
        await until(lambda: sub.connected, "the new connection")
        assert sub.received == 0
        await sub.stop()
    assert w.reason_text(reason) in caplog.text


async def test_a_server_disconnect_is_logged_with_its_reason_and_the_client_reconnects(
        caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    caplog.set_level(logging.INFO)
    async with scripted_broker() as peer:
        sub = subscriber(peer.port, loop.create_future, [])
        session = await started(peer, sub, session_present=True)
        session.send(w.disconnect_packet(0x8B, {"reason_string": "going down"}))
        again = await peer.next_session()
        connect, _ = await again.handshake(session_present=False)
        assert not connect.clean_start
        await until(lambda: sub.connected and sub.connections == 2, "the new connection")
        await sub.stop()
    assert "139 (server shutting down) (going down)" in caplog.text
    assert "(session present: True)" in caplog.text
    assert "had no session" in caplog.text  # a lost session is reported


async def test_pubacks_of_a_lost_connection_are_not_sent_on_the_next() -> None:
    """Packet ids of messages read on a lost connection are void: the broker delivers those
    messages again, and acknowledging the old ids could acknowledge others."""
    loop = asyncio.get_running_loop()
    old, new = loop.create_future(), loop.create_future()
    batches = iter([old, new])
    async with scripted_broker() as peer:
        sub = subscriber(peer.port, lambda: next(batches), [])
        session = await started(peer, sub)
        session.send(pub(1))
        await until(lambda: sub.received == 1, "the first message")
        session.close()
        again = await peer.next_session()
        await again.handshake(session_present=True)
        again.send(pub(2))
        await until(lambda: sub.received == 2, "the second message")
        old.set_result(None)
        new.set_result(None)
        assert await again.expect(w.PUBACK) == b"\x00\x02"
        assert sub.gate.messages == 0
        await sub.stop()


async def test_a_reconnection_with_the_gate_closed_subscribes_then_waits() -> None:
    """Messages still waiting for their commit keep the gate closed across a reconnection:
    the new connection reads its SUBACK, then stops reading until the commit. (A paused
    connection sees the broker gone when a PINGREQ fails: keepalive 1 s here.)"""
    loop = asyncio.get_running_loop()
    commit = loop.create_future()
    batches = iter([commit, commit])
    async with scripted_broker() as peer:
        sub = subscriber(peer.port, lambda: next(batches), [], receive_maximum=1,
                         keepalive_s=1)
        session = await started(peer, sub)
        session.send(pub(1))
        await until(lambda: not sub.gate.is_open, "the gate to close")
        session.close()
        again = await peer.next_session()
        await again.handshake(session_present=True)
        await until(lambda: sub.connected and sub.connections == 2, "the new connection")
        again.send(pub(1, dup=True))  # the broker sends the unacknowledged message again
        with pytest.raises(AssertionError, match="the redelivery"):
            await until(lambda: sub.received == 2, "the redelivery", timeout=1)
        commit.set_result(None)  # the gate reopens: reading resumes
        await until(lambda: sub.received == 2 and sub.redelivered == 1, "the redelivery")
        await sub.stop()


@pytest.mark.parametrize(("reason", "text"), [
    (0x86, "bad user name or password"), (0x87, "not authorized"),
    (0x85, "client identifier not valid")])
async def test_a_refused_connection_raises_a_clear_error(reason: int, text: str) -> None:
    loop = asyncio.get_running_loop()
    async with scripted_broker() as peer:
        sub = subscriber(peer.port, loop.create_future, [])
        start = asyncio.ensure_future(sub.start())
        session = await peer.next_session()
        await session.expect(w.CONNECT)
        session.send(w.connack_packet(reason))
        with pytest.raises(ConnectRefused) as err:
            await start
    assert err.value.reason == reason and text in str(err.value)
    assert "beffroi-ingest-0" in str(err.value) and "'ingest'" in str(err.value)


async def test_a_refused_subscription_raises_and_disconnects() -> None:
    loop = asyncio.get_running_loop()
    async with scripted_broker() as peer:
        sub = subscriber(peer.port, loop.create_future, [], topics=["city/#", "secret/#"])
        start = asyncio.ensure_future(sub.start())
        session = await peer.next_session()
        await session.handshake(reasons=(0, 0x87))
        with pytest.raises(SubscriptionRefused, match=r"city/# \(granted QoS 0 only\), "
                           r"secret/# \(135 \(not authorized\)\)"):
            await start
        assert await session.expect(w.DISCONNECT) == b""
        assert not sub.connected


async def test_keepalive_pings_and_a_silent_broker_is_dropped() -> None:
    loop = asyncio.get_running_loop()
    async with scripted_broker() as peer:
        sub = subscriber(peer.port, loop.create_future, [], keepalive_s=1)
        session = await started(peer, sub)
        await until(lambda: session.pings >= 2, "PINGREQs while idle")  # answered
        session.answer_pings = False
        pings = session.pings
        assert await session.expect(EOF[0], timeout=10) == b""  # dropped as dead
        assert session.pings <= pings + 4
        again = await peer.next_session()
        await again.handshake(session_present=True)
        await until(lambda: sub.connected, "the new connection")
        await sub.stop()


async def test_a_paused_client_keeps_pinging_and_its_connection() -> None:
    """While reading waits for commits no PINGRESP can be read: the silence is the client's
    own, so it keeps the connection (and keeps pinging so the broker keeps it too)."""
    loop = asyncio.get_running_loop()
    commit = loop.create_future()
    async with scripted_broker() as peer:
        sub = subscriber(peer.port, lambda: commit, [], keepalive_s=1, receive_maximum=1)
        session = await started(peer, sub)
        session.answer_pings = False
        session.send(pub(1))
        await until(lambda: not sub.gate.is_open, "the gate to close")
        await until(lambda: session.pings >= 8, "PINGREQs while paused")  # about 4 s
        assert session.packets.empty() and sub.connected and sub.connections == 1
        commit.set_result(None)
        assert await session.expect(w.PUBACK) == b"\x00\x01"
        await sub.stop()


def test_backoff_is_capped_and_jittered() -> None:
    b = Backoff(first=1, cap=8)
    delays = [b.next() for _ in range(6)]
    for d, top in zip(delays, [1, 2, 4, 8, 8, 8], strict=True):
        assert top / 2 <= d <= top
    b.reset()
    assert 0.5 <= b.next() <= 1


@pytest.mark.parametrize("scenario", [
    test_connect_subscribe_and_stop_bytes, test_pubacks_leave_after_their_commit_in_commit_order,
    test_reading_stops_at_the_inflight_bound_and_resumes_after_commit,
    test_pubacks_of_a_lost_connection_are_not_sent_on_the_next,
    test_a_reconnection_with_the_gate_closed_subscribes_then_waits,
    test_the_same_with_reads_in_bursts,
    test_after_a_short_read_the_next_read_waits_and_takes_what_came_meanwhile,
])
def test_the_same_under_uvloop(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """The ingestor runs on uvloop, whose transports are not asyncio's classes."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert isinstance(runner.get_loop(), uvloop.Loop)
        runner.run(scenario())
