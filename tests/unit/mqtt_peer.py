"""A scripted MQTT 5 server on 127.0.0.1, for byte-level tests of the ingestor's client.

It plays the broker's side of what the specification allows and what no well-behaved broker
does on demand (a packet over the client's maximum size, a malformed packet, a DISCONNECT
with a reason). It decodes what the client sends with the project's one decoder.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from devices import mqttwire as w

Packet = tuple[int, int, bytes]
EOF = (-1, 0, b"")


class PeerSession:
    """One client connection as the server sees it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.packets: asyncio.Queue[Packet] = asyncio.Queue()
        self.pings = 0
        self.answer_pings = True
        self.close_on_disconnect = True

        def on_publish(*args: object) -> None:
            raise AssertionError("the subscriber published")

        self._parser = w.PacketReader(on_publish, self._on_packet)
        self._task = asyncio.ensure_future(self._read())

    def _on_packet(self, kind: int, flags: int, body: bytes) -> None:
        if kind == w.PINGREQ:
            self.pings += 1
            if self.answer_pings:
                self.send(w.PINGRESP_PACKET)
            return
        self.packets.put_nowait((kind, flags, body))
        if kind == w.DISCONNECT and self.close_on_disconnect:
            self.writer.close()  # as a broker does

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await self.reader.read(1 << 16):
                self._parser.feed(data)
        self.packets.put_nowait(EOF)

    def send(self, data: bytes) -> None:
        """Write bytes to the client."""
        self.writer.write(data)

    async def expect(self, kind: int, timeout: float = 10) -> bytes:
        """The body of the next packet, which must be of ``kind`` (-1: the connection end)."""
        got = await asyncio.wait_for(self.packets.get(), timeout)
        assert got[0] == kind, f"expected packet type {kind}, got {got}"
        return got[2]

    async def handshake(self, *, session_present: bool = False, reasons: Sequence[int] = (1,),
                        connack: bytes | None = None) -> tuple[w.Connect, list[str]]:
        """Answer CONNECT and SUBSCRIBE; return them."""
        connect = w.decode_connect(await self.expect(w.CONNECT))
        self.send(connack or w.connack_packet(session_present=session_present))
        pid, filters, _ = w.decode_subscribe(await self.expect(w.SUBSCRIBE))
        self.send(w.suback_packet(pid, reasons))
        return connect, [f for f, _ in filters]

    def close(self) -> None:
        """Close the connection."""
        self.writer.close()


class Peer:
    """The server: every accepted connection becomes a ``PeerSession`` in ``sessions``."""

    def __init__(self) -> None:
        self.sessions: asyncio.Queue[PeerSession] = asyncio.Queue()
        self.port = 0
        self._all: list[PeerSession] = []

    async def next_session(self, timeout: float = 10) -> PeerSession:
        """The next client connection."""
        return await asyncio.wait_for(self.sessions.get(), timeout)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        s = PeerSession(reader, writer)
        self._all.append(s)
        self.sessions.put_nowait(s)


@contextlib.asynccontextmanager
async def scripted_broker() -> AsyncIterator[Peer]:
    """A running ``Peer`` on an ephemeral port."""
    peer = Peer()
    server = await asyncio.start_server(peer._accept, "127.0.0.1", 0)
    peer.port = server.sockets[0].getsockname()[1]
    try:
        yield peer
    finally:
        server.close()
        for s in peer._all:
            s.writer.close()
            s._task.cancel()
        await server.wait_closed()
