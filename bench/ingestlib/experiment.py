"""``beffroi ingest`` with candidate hot-path fixes applied from outside, for A/B runs.

Not part of Beffroi: the benchmark runs it instead of ``beffroi.cli`` when given
``--ingest-module bench.ingestlib.experiment``; ``BENCH_EXPERIMENT`` (comma-separated) picks
the changes, so their effect is measured with the same harness before the ingestor changes:

- ``flow``: bound in-flight messages in the ingestor itself. Mosquitto 2.0.11 does not hold to
  the MQTT 5 Receive Maximum once PUBACKs come back in bursts (as ack-after-commit sends them),
  so the broker pushes its whole queue and the ingestor grows a task per message. Here the
  subscriber's read loop waits while ``BENCH_MAX_INFLIGHT`` handlers are in flight and resumes
  below half of it (TCP backpressure keeps the rest queued in the broker).
- ``uvloop``: install uvloop also for ``--workers 1`` (the runner only does it for N > 1).
- ``gc``: freeze the start-up heap and collect the young generation less often.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from typing import Any

from beffroi import cli
from ingest import mqtt


def _install_flow_control(limit: int) -> None:
    """Gate gmqtt's socket read loop on the number of handlers in flight.

    Pausing the transport is not enough: gmqtt reads through an ``asyncio.StreamReader``,
    whose own flow control resumes the transport as soon as its buffer drains. Holding the
    read loop instead lets that buffer fill, the StreamReader pause the transport, and TCP
    backpressure keep the rest of the backlog in the broker.
    """
    from gmqtt.mqtt import protocol

    original = mqtt.GmqttSubscriber._on_message
    original_read = protocol.BaseMQTTProtocol.read
    low = limit // 2
    state = {"inflight": 0}
    gate: list[asyncio.Event] = []

    def event() -> asyncio.Event:
        if not gate:
            gate.append(asyncio.Event())
            gate[0].set()
        return gate[0]

    async def read(self: Any, n: int = -1) -> bytes:
        await event().wait()
        data: bytes = await original_read(self, n)
        return data

    async def on_message(self: mqtt.GmqttSubscriber, client: Any, topic: str, payload: bytes,
                         qos: int, properties: dict[str, Any]) -> int:
        state["inflight"] += 1
        if state["inflight"] >= limit:
            event().clear()
        try:
            return await original(self, client, topic, payload, qos, properties)
        finally:
            state["inflight"] -= 1
            if state["inflight"] <= low:
                event().set()

    protocol.BaseMQTTProtocol.read = read
    mqtt.GmqttSubscriber._on_message = on_message  # type: ignore[method-assign]


def _apply() -> None:
    """Apply the changes named in ``BENCH_EXPERIMENT`` (at import: spawned workers too)."""
    chosen = {x.strip() for x in os.environ.get("BENCH_EXPERIMENT", "").split(",") if x}
    if "flow" in chosen:
        _install_flow_control(int(os.environ.get("BENCH_MAX_INFLIGHT", "20000")))
    if "uvloop" in chosen:
        import uvloop

        uvloop.install()
    if "gc" in chosen:
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)


_apply()


def main() -> None:
    """Run ``beffroi`` with the given arguments."""
    sys.argv[0] = "beffroi"
    sys.exit(cli.main())


if __name__ == "__main__":
    main()
