"""The in-flight bound: how much the ingestor has read from the broker and not yet acknowledged."""

from __future__ import annotations

import sys
from collections.abc import Callable


class InflightGate:
    """Messages (and their bytes) received but not yet acknowledged; closed above a limit.

    With acknowledgement after commit, what the ingestor holds in memory is what it has read
    from the socket and not yet acknowledged. The broker should stop at our Receive Maximum,
    but Mosquitto 2.0.11 does not: draining a persistent session's backlog, it sent the whole
    queue (760,000 of 1,000,000 messages unacknowledged at once, 800 MB resident). So the
    ingestor holds the bound itself: while the gate is closed the subscriber stops reading
    the socket (``on_change(False)`` pauses the transport) and TCP backpressure keeps the rest
    of the backlog in the broker. It reopens below ``RESUME_AT`` of both limits, so it does
    not flap on every commit.
    """

    RESUME_AT = 0.8

    __slots__ = ("_open", "bytes", "closures", "max_bytes", "max_messages", "messages",
                 "on_change")

    def __init__(self, max_messages: int, max_bytes: int = 0) -> None:
        if max_messages < 1 or max_bytes < 0:
            raise ValueError("max_messages must be >= 1 and max_bytes >= 0 (0: no byte limit)")
        self.max_messages = max_messages
        self.max_bytes = max_bytes or sys.maxsize
        self.messages = 0
        self.bytes = 0
        self.closures = 0
        self._open = True
        # Called with False when the gate closes, True when it reopens.
        self.on_change: Callable[[bool], None] | None = None

    @property
    def is_open(self) -> bool:
        """False while reading must wait."""
        return self._open

    def add(self, size: int) -> None:
        """A message of ``size`` bytes was received; close the gate at a limit."""
        self.messages += 1
        self.bytes += size
        if self._open and (self.messages >= self.max_messages or self.bytes >= self.max_bytes):
            self._open = False
            self.closures += 1
            if self.on_change is not None:
                self.on_change(False)

    def release(self, messages: int, size: int) -> None:
        """Messages were acknowledged (or given up to redelivery); reopen below the limits."""
        self.messages -= messages
        self.bytes -= size
        if not self._open and self.messages < self.max_messages * self.RESUME_AT \
                and self.bytes < self.max_bytes * self.RESUME_AT:
            self._open = True
            if self.on_change is not None:
                self.on_change(True)
