"""The ingestor's MQTT client against the real Mosquitto, for every behaviour the ingestor
relies on: session resumption, redelivery with DUP after a crash, shared subscriptions split
between workers, a broker restart, a refused subscription, a wrong password."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from beffroi.broker_auth import connection_user
from beffroi.settings import Settings
from beffroi.stack import Stack
from ingest.mqtt import ConnectRefused, MqttSubscriber, SubscriptionRefused
from tests.integration.mqtt_helpers import Publisher, await_until, purge_session

pytestmark = pytest.mark.stack

Message = tuple[str, bytes, int, dict[str, Any]]


class Recorder:
    """A ``submit`` that records messages; ``commit`` decides whether they are acknowledged."""

    def __init__(self, *, commit: bool = True) -> None:
        self.messages: list[Message] = []
        self.commit = commit
        self.held: list[asyncio.Future[None]] = []

    def __call__(self, topic: str, payload: bytes, qos: int, props: dict[str, Any]
                 ) -> asyncio.Future[None]:
        self.messages.append((topic, payload, qos, props))
        fut = asyncio.get_running_loop().create_future()
        if self.commit:
            fut.set_result(None)
        else:
            self.held.append(fut)
        return fut

    def payloads(self) -> list[bytes]:
        return [m[1] for m in self.messages]


def make(stack: Stack, client_id: str, topics: list[str], submit: Callable[..., Any], *,
         account: tuple[str, str] | None = None,
         on_state: Callable[[bool], None] | None = None) -> MqttSubscriber:
    host, port = stack.broker_address()
    user, password = account or stack.mqtt_credentials("admin")
    sub = MqttSubscriber(host=host, port=port, username=user, password=password,
                         client_id=client_id, topics=topics, submit=submit,
                         receive_maximum=1000, session_expiry_s=3600, on_state=on_state)
    sub.backoff.first = 0.2
    return sub


@contextlib.asynccontextmanager
async def publisher(stack: Stack) -> AsyncIterator[Callable[[str, list[bytes]], Any]]:
    pub = await asyncio.to_thread(Publisher.as_role, stack, "admin")

    async def send(topic: str, payloads: list[bytes]) -> None:
        await asyncio.to_thread(pub.publish_many, [(topic, p) for p in payloads])

    try:
        yield send
    finally:
        await asyncio.to_thread(pub.close)


async def until(cond: Callable[[], bool], what: str, timeout: float = 30) -> None:
    async def check() -> bool:
        return cond()

    await await_until(check, timeout=timeout, what=what)


def _numbered(n: int, tag: str = "m") -> list[bytes]:
    return [f"{tag}{i}".encode() for i in range(n)]


async def test_a_resumed_session_delivers_what_was_queued(stack: Stack, uid: str) -> None:
    cid = f"{uid}-resume"
    rec = Recorder()
    try:
        sub = make(stack, cid, [f"{uid}/#"], rec)
        await sub.start()
        assert not sub.session_present  # a new session
        await sub.stop()
        async with publisher(stack) as send:
            await send(f"{uid}/a", _numbered(5))  # queued for the offline session
        sub = make(stack, cid, [f"{uid}/#"], rec)
        await sub.start()
        assert sub.session_present
        await until(lambda: len(rec.messages) == 5, "the queued messages")
        assert rec.payloads() == _numbered(5) and sub.redelivered == 0
        await sub.stop()
    finally:
        await asyncio.to_thread(purge_session, stack, cid)


async def test_unacknowledged_messages_come_back_with_dup_after_a_crash(stack: Stack,
                                                                       uid: str) -> None:
    cid = f"{uid}-crash"
    topics = [f"{uid}/#"]
    try:
        held = Recorder(commit=False)  # never committed: never acknowledged
        sub = make(stack, cid, topics, held)
        await sub.start()
        async with publisher(stack) as send:
            await send(f"{uid}/a", _numbered(10))
            await until(lambda: len(held.messages) == 10, "the first delivery")
            assert sub.redelivered == 0
            await sub.abort()  # no DISCONNECT, no PUBACK: a crash as the broker sees it

            again = Recorder()
            sub = make(stack, cid, topics, again)
            await sub.start()
            await until(lambda: len(again.messages) == 10, "the redelivery")
            assert again.payloads() == held.payloads() and sub.redelivered == 10
            await sub.stop()  # after the PUBACKs of the redelivery

            last = Recorder()
            sub = make(stack, cid, topics, last)
            await sub.start()
            await send(f"{uid}/a", [b"after"])
            await until(lambda: len(last.messages) >= 1, "the next message")
            assert last.payloads() == [b"after"] and sub.redelivered == 0  # acks held
            await sub.stop()
    finally:
        await asyncio.to_thread(purge_session, stack, cid)


async def test_two_workers_share_a_subscription(stack: Stack, uid: str) -> None:
    n = 200
    topics = [f"$share/{uid}/{uid}/#"]
    recs = [Recorder(), Recorder()]
    subs = [make(stack, f"{uid}-w{i}", topics, recs[i]) for i in range(2)]
    try:
        for sub in subs:
            await sub.start()
        async with publisher(stack) as send:
            await send(f"{uid}/a", _numbered(n))
        await until(lambda: sum(len(r.messages) for r in recs) >= n, "every message")
        got = recs[0].payloads() + recs[1].payloads()
        assert sorted(got) == sorted(_numbered(n))  # each exactly once
        assert min(len(r.messages) for r in recs) > n // 4, [len(r.messages) for r in recs]
    finally:
        for sub in subs:
            await sub.stop()
        for i in range(2):
            await asyncio.to_thread(purge_session, stack, f"{uid}-w{i}")


@pytest.mark.slow
async def test_a_broker_restart_reconnects_and_resumes_the_session(stack: Stack,
                                                                   uid: str) -> None:
    cid = f"{uid}-restart"
    rec = Recorder()
    states: list[bool] = []
    sub = make(stack, cid, [f"{uid}/#"], rec, on_state=states.append)
    try:
        await sub.start()
        broker = stack.broker()
        await asyncio.to_thread(broker.stop)
        await until(lambda: not sub.connected, "the client to see the broker gone")
        await asyncio.to_thread(broker.start)
        await until(lambda: sub.connected and sub.connections == 2, "the reconnection", 60)
        assert sub.session_present and states[-2:] == [False, True]
        async with publisher(stack) as send:
            await send(f"{uid}/a", _numbered(5))
        await until(lambda: len(rec.messages) == 5, "messages after the restart")
    finally:
        await sub.stop()
        await asyncio.to_thread(purge_session, stack, cid)


async def test_a_refused_subscription_is_an_error(stack: Stack, settings: Settings) -> None:
    worker = settings.ingest_max_workers - 2  # an ingest account slot no test ingestor uses
    user, password = stack.mqtt_credentials("ingest")
    sub = make(stack, f"{settings.ingest_client_id}-{worker}",
               [f"{settings.topic_prefix}/#", "not-a-device-topic/#"], Recorder(),
               account=(connection_user(user, worker), password))
    with pytest.raises(SubscriptionRefused, match=r"not-a-device-topic/# \(135 \(not authorized\)"):
        await sub.start()
    assert not sub.connected


async def test_a_wrong_password_is_refused_with_a_clear_error(stack: Stack, uid: str) -> None:
    user, password = stack.mqtt_credentials("admin")
    sub = make(stack, f"{uid}-wrong", [f"{uid}/#"], Recorder(),
               account=(user, password + "x"))
    with pytest.raises(ConnectRefused) as err:
        await sub.start()
    assert err.value.reason in (0x86, 0x87)
    assert "bad user name or password" in str(err.value) or "not authorized" in str(err.value)
