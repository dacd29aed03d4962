"""Bounds around every route: the query string's size and (outside /v2/) a path without
control characters, checked before it runs, and the answer to a request the server ends because
a stop's drain time ran out.

(Header sizes and read timeouts belong to the HTTP server.)
"""

from __future__ import annotations

import asyncio
import logging

from starlette.types import ASGIApp, Receive, Scope, Send

from registry.api.errors import render
from registry.errors import QueryTooLong, RouteUnknown, Unavailable

log = logging.getLogger("registry.http")


class InFlight:
    """The requests this process is serving. When a stop's drain time runs out, uvicorn
    cancels those still running and goes straight on to the app's shutdown, then ends
    the process: a request cancelled there may not yet have sent its 503 (seen on a
    busy machine, the client got the connection closed and nothing). The app's shutdown
    first waits for them, briefly."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[object]] = set()

    def add(self) -> asyncio.Task[object] | None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        return task

    def discard(self, task: asyncio.Task[object] | None) -> None:
        self._tasks.discard(task)

    async def ended(self, within: float) -> None:
        """Until every request being served has ended, or `within` seconds."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=within)


class RequestLimits:
    def __init__(self, app: ASGIApp, *, query_bytes: int, in_flight: InFlight) -> None:
        self.app = app
        self.query_bytes = query_bytes
        self.in_flight = in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            # Not the lifespan's own task, whose shutdown waits for the requests.
            await self.app(scope, receive, send)
            return
        task = self.in_flight.add()
        try:
            await self._serve(scope, receive, send)
        finally:
            self.in_flight.discard(task)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        if len(scope["query_string"]) > self.query_bytes:
            error = QueryTooLong(
                {"limit": self.query_bytes},
                message=f"the query string is longer than {self.query_bytes} bytes "
                "(limits.query_bytes)",
            )
            await render(error)(scope, receive, send)
            return
        path: str = scope["path"]
        if not path.isprintable() and not path.startswith("/v2/"):
            # %00 and the like decode into the path: no account, namespace or token is
            # named with one, and PostgreSQL refuses a NUL in text, so such a path names
            # nothing here. (/v2/ checks its names, tags and digests before any query.)
            unknown = RouteUnknown(message="no such endpoint: the path holds a control character")
            await render(unknown)(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except asyncio.CancelledError:
            # uvicorn cancels only the requests still running http.drain_seconds after
            # SIGTERM. Unless an answer has begun, the client gets a 503 it may retry
            # (on another replica), rather than uvicorn's plain-text 500.
            log.warning(
                "ended %s %s: still running when the stop's http.drain_seconds ran out",
                scope["method"],
                scope["path"],
            )
            stopping = Unavailable(
                message="the server is stopping; retry the request",
                headers={"Retry-After": "1", "Connection": "close"},
            )
            try:
                await render(stopping)(scope, receive, send)
            except RuntimeError:  # the response had begun: uvicorn closes the connection
                raise asyncio.CancelledError from None
