"""The API benchmark's HTTP client against a server that answers canned bytes: lengths,
chunked bodies, keep-alive and its end, a broken answer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from bench.apilib.client import Connection, HttpError

ANSWERS = {
    b"/length": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
    b"/chunked": (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                  b"4;ext=1\r\nabcd\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n"),
    b"/close": b"HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 2\r\n\r\nno",
    b"/broken": b"SMTP ready\r\n\r\n",
    # answered, then the connection dropped without a word (a server's idle timeout)
    b"/then-idle": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"/drop": b"",  # never answered
    b"/post": b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
}


async def _with_server(test: Callable[[str], Awaitable[None]]) -> tuple[list[bytes], int]:
    """Run ``test(base)`` against the canned server; the requests it saw and how many
    connections were opened."""
    seen: list[bytes] = []
    opened = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal opened
        opened += 1
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:  # the client closed the connection
                break
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    head += await reader.readexactly(int(line.split(b":")[1]))
            seen.append(head)
            path = head.split(b" ")[1]
            writer.write(ANSWERS[path])
            await writer.drain()
            if path in (b"/close", b"/broken", b"/then-idle", b"/drop"):
                break
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        await test(f"http://127.0.0.1:{port}")
    return seen, opened


def test_lengths_chunks_keep_alive_and_close() -> None:
    async def run(base: str) -> None:
        conn = Connection(base, {"Authorization": "Bearer x"})
        assert (await conn.get("/length")).body == b"hello"
        chunked = await conn.get("/chunked")
        assert (chunked.status, chunked.body) == (200, b"abcd0123456789")
        assert (await conn.get("/length")).status == 200
        closed = await conn.get("/close")
        assert (closed.status, closed.body) == (404, b"no")
        assert (await conn.get("/length")).body == b"hello"  # a new connection
        await conn.close()

    seen, opened = asyncio.run(_with_server(run))
    assert opened == 2  # keep-alive until the server said close
    assert len(seen) == 5
    assert seen[0].startswith(b"GET /length HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nAuthorization: Bearer x\r\n" in seen[0]


def test_an_answer_that_is_not_http_is_an_error() -> None:
    async def run(base: str) -> None:
        conn = Connection(base)
        with pytest.raises(HttpError, match=r"not an HTTP/1\.x status line"):
            await conn.get("/broken")
        assert (await conn.get("/length")).body == b"hello"  # reconnects
        await conn.close()

    asyncio.run(_with_server(run))


def test_a_connection_the_server_dropped_while_idle_is_reopened_once() -> None:
    async def run(base: str) -> None:
        conn = Connection(base)
        assert (await conn.get("/then-idle")).body == b"ok"
        assert (await conn.get("/length")).body == b"hello"  # sent again on a new one
        with pytest.raises(HttpError, match="closed the connection without an answer"):
            await conn.get("/drop")
        await conn.close()

    seen, opened = asyncio.run(_with_server(run))
    assert [h.split(b" ")[1] for h in seen] == [b"/then-idle", b"/length", b"/drop",
                                                b"/drop"]
    assert opened == 3  # the first, its replacement, and one more for /drop's second try


def test_a_post_sends_its_json_body_and_keeps_the_connection() -> None:
    async def run(base: str) -> None:
        conn = Connection(base, {"Authorization": "Bearer x"})
        posted = await conn.request("POST", "/post", b'{"code": "abc"}')
        assert (posted.status, posted.body) == (201, b"ok")
        assert (await conn.get("/length")).body == b"hello"  # the same connection
        await conn.close()

    seen, opened = asyncio.run(_with_server(run))
    assert opened == 1
    head, _, body = seen[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /post HTTP/1.1\r\n")
    assert b"\r\nContent-Type: application/json\r\nContent-Length: 15" in head
    assert b"\r\nAuthorization: Bearer x\r\n" in head + b"\r\n"
    assert body == b'{"code": "abc"}'
    assert seen[1].startswith(b"GET /length HTTP/1.1\r\n")
