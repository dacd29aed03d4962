"""Bounds around every route: the query string's size, checked before it runs, and the
answer to a request the server ends because a stop's drain time ran out.

(Header sizes and read timeouts belong to the HTTP server.)
"""

from __future__ import annotations

import asyncio
import logging

from starlette.types import ASGIApp, Receive, Scope, Send

from registry.api.errors import render
from registry.errors import QueryTooLong, Unavailable

log = logging.getLogger("registry.http")


class RequestLimits:
    def __init__(self, app: ASGIApp, *, query_bytes: int) -> None:
        self.app = app
        self.query_bytes = query_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and len(scope["query_string"]) > self.query_bytes:
            error = QueryTooLong(
                {"limit": self.query_bytes},
                message=f"the query string is longer than {self.query_bytes} bytes "
                "(limits.query_bytes)",
            )
            await render(error)(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except asyncio.CancelledError:
            # uvicorn cancels only the requests still running http.drain_seconds after
            # SIGTERM. Unless an answer has begun, the client gets a 503 it may retry
            # (on another replica), rather than uvicorn's plain-text 500.
            if scope["type"] != "http":
                raise
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
