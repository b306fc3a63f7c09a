"""Stop working for a client that has gone: cancel the request (and its query).

Without this a GET whose client disconnects runs to the end: its query keeps a pooled
connection and a PostgreSQL backend busy (up to the statement timeout) for an answer
nobody reads. Cancelling the request's task makes psycopg cancel the running statement
on the server (``AsyncConnection.wait`` sends a cancel request when interrupted) before
the connection goes back to the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import MutableMapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)


class CancelOnDisconnect:
    """ASGI middleware: a GET or HEAD whose client disconnects before the response is
    complete is cancelled. The request body is read first (a GET has none), so that
    listening for the disconnect never takes a body message away from the route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        body: list[Message] = []
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body.append(msg)
            if not msg.get("more_body"):
                break
        gone = asyncio.Event()
        complete = False

        async def replay() -> Message:
            if body:
                return body.pop(0)
            await gone.wait()
            return {"type": "http.disconnect"}

        async def tracked_send(message: MutableMapping[str, Any]) -> None:
            nonlocal complete
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                complete = True

        task = asyncio.ensure_future(self.app(scope, replay, tracked_send))
        watcher = asyncio.ensure_future(receive())
        try:
            await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            if not watcher.done():
                watcher.cancel()
        if (not task.done() and not complete and watcher.exception() is None
                and watcher.result()["type"] == "http.disconnect"):
            gone.set()
            log.info("client gone: cancelling %s %s", scope["method"], scope["path"])
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return
        gone.set()
        await task
