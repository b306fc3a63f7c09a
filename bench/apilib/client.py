"""The benchmark's HTTP client: requests over keep-alive HTTP/1.1 connections on asyncio
streams.

The client shares the machine's cores with the server and the database, so its CPU is taken
from theirs: httpx spent 1.5 to 2 ms of CPU per request here, as much as the API itself on
its lightest routes, and the measured latencies carried that cost. This client sends one
prepared request and reads the answer's head and body (``Content-Length`` or chunked), about
a tenth of that. It speaks just what the benchmark needs: GET, and POST of a JSON body, one
request at a time per connection, no redirects, no compression, no TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from urllib.parse import urlsplit


class HttpError(Exception):
    """An answer the client cannot read (the connection is then closed)."""


class _NoAnswer(Exception):
    """The connection ended before a byte of the answer came."""


@dataclass(frozen=True)
class Answer:
    """Status and body of one answer."""

    status: int
    body: bytes


class Connection:
    """One keep-alive connection to ``base`` (``http://host:port``), sending ``headers``
    with every request; reopened when the server closes it."""

    def __init__(self, base: str, headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(base)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"an http://host:port base is needed, not {base!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._head = f"Host: {parts.netloc}\r\n{extra}".encode("latin-1")
        self._requests: dict[tuple[str, str, bytes | None], bytes] = {}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> Answer:
        """``GET path``; the whole answer (:meth:`request`)."""
        return await self.request("GET", path)

    async def request(self, method: str, path: str, body: bytes | None = None) -> Answer:
        """``method path``, with ``body`` as JSON if given; the whole answer. A kept-alive
        connection the server closed while it was idle (uvicorn closes them after 5 s) is
        reopened and the request sent again, once, as HTTP clients do for a request that
        got no answer at all."""
        key = (method, path, body)
        request = self._requests.get(key)
        if request is None:
            request = f"{method} {path} HTTP/1.1\r\n".encode("latin-1") + self._head
            if body is not None:
                request += (f"Content-Type: application/json\r\nContent-Length: {len(body)}"
                            "\r\n\r\n").encode("latin-1") + body
            else:
                request += b"\r\n"
            if len(self._requests) < 64:  # the routes' fixed requests, not one-off bodies
                self._requests[key] = request
        what = f"{method} {path}"
        if self._writer is not None:
            try:
                return await self._exchange(what, request)
            except _NoAnswer:
                await self.close()
        try:
            return await self._exchange(what, request)
        except _NoAnswer as exc:
            await self.close()
            raise HttpError(f"{what}: the server closed the connection without an "
                            "answer") from exc

    async def _exchange(self, what: str, request: bytes) -> Answer:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        try:
            self._writer.write(request)
            try:
                head = await self._reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionResetError) as exc:
                if isinstance(exc, ConnectionResetError) or not exc.partial:
                    raise _NoAnswer from exc
                raise
            status, length, chunked, close = _parse_head(head)
            if chunked:
                body = await _read_chunked(self._reader)
            elif length is not None:
                body = await self._reader.readexactly(length)
            else:  # no length: the body ends with the connection
                body = await self._reader.read()
                close = True
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                HttpError) as exc:
            await self.close()
            raise HttpError(f"{what}: {exc}") from exc
        if close:
            await self.close()
        return Answer(status, body)

    async def close(self) -> None:
        """Close the connection (the next request opens another)."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _parse_head(head: bytes) -> tuple[int, int | None, bool, bool]:
    """Status, Content-Length, chunked, and whether the server closes the connection."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise HttpError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    length: int | None = None
    chunked = close = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding":
            chunked = "chunked" in value.lower()
        elif name == "connection":
            close = "close" in value.lower()
    return int(parts[1]), length, chunked, close


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    """A chunked body (RFC 9112 §7.1), trailers skipped."""
    parts: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise HttpError(f"bad chunk size line {size_line[:40]!r}") from None
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, then the end
                pass
            return b"".join(parts)
        chunk = await reader.readexactly(size + 2)
        parts.append(chunk[:-2])
