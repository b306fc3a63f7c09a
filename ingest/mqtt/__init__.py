"""The ingestor's MQTT client: a small MQTT 5 subscriber of its own, behind a protocol.

``MqttSubscriber`` (``client``) keeps a persistent session and acknowledges each message after
the batch holding it has committed; ``Connection`` (``connection``) is the ``asyncio.Protocol``
of one TCP connection; the packets themselves are encoded and decoded by
``devices.mqttwire``, shared with the tests and the benchmark's publishers.
"""

from __future__ import annotations

from typing import Protocol

from ingest.mqtt.client import ConnectRefused, MqttSubscriber, SubmitHandler, SubscriptionRefused
from ingest.mqtt.gate import InflightGate

__all__ = ["ConnectRefused", "InflightGate", "MqttSubscriber", "SubmitHandler", "Subscriber",
           "SubscriptionRefused"]


class Subscriber(Protocol):
    """What the ingestor needs from an MQTT client."""

    async def start(self) -> None:
        """Connect, subscribe, and keep reconnecting until ``stop``."""

    async def stop(self, *, end_session: bool = False) -> None:
        """Disconnect cleanly (the broker keeps the session unless ``end_session``)."""

    @property
    def connected(self) -> bool:
        """True while connected."""
