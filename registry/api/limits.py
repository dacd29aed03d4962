"""Bounds checked before any route runs: the query string's size.

(Header sizes and read timeouts belong to the HTTP server.)
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from registry.api.errors import render
from registry.errors import QueryTooLong


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
        await self.app(scope, receive, send)
