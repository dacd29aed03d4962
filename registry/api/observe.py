"""What every request passes through first: its context (registry.context: a request
ID, the client's address, then who the caller is), an `X-Request-ID` on the answer, and
when it ends its metrics (registry.metrics) and one access log line.

A request ID comes from the client only through a trusted proxy (api/forwarded.py marks
those requests), which is how nginx's `$request_id` reaches our logs; otherwise one is
made here. Either way it is returned, and put on every log line written meanwhile.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.api.forwarded import TRUSTED_PEER
from registry.context import Context, using
from registry.metrics import (
    HTTP_DURATION,
    HTTP_IN_FLIGHT,
    HTTP_REQUEST_BYTES,
    HTTP_REQUESTS,
    HTTP_RESPONSE_BYTES,
)

access = logging.getLogger("registry.access")
# Methods are labels of the request metrics as they are; any other is "other".
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# What a request ID from a proxy may look like: nginx's are 32 hex digits.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


class Observe:
    def __init__(self, app: ASGIApp, *, access_log: bool) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"x-request-id") if scope.get(TRUSTED_PEER) else None
        request_id = given if given and _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        client = scope.get("client")
        ctx = Context(
            actor_kind="anonymous",
            actor="",
            request_id=request_id,
            address=client[0] if client else None,
            host=_header(scope, b"host"),
            scheme=scope.get("scheme", "http"),
            method=scope["method"],
            user_agent=(_header(scope, b"user-agent") or "")[:255] or None,
        )
        status = 0
        sent = received = 0
        header = (b"x-request-id", request_id.encode())

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            return message

        async def stamping_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        start = time.perf_counter()
        HTTP_IN_FLIGHT.inc()
        with using(ctx):
            try:
                await self.app(scope, counting_receive, stamping_send)
            finally:
                HTTP_IN_FLIGHT.dec()
                seconds = time.perf_counter() - start
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                method = ctx.method if ctx.method in _METHODS else "other"
                HTTP_REQUESTS.labels(method, route, str(status)).inc()
                HTTP_DURATION.labels(method, route).observe(seconds)
                if received:
                    HTTP_REQUEST_BYTES.labels(route).inc(received)
                if sent:
                    HTTP_RESPONSE_BYTES.labels(route).inc(sent)
                if self.access_log:
                    self._log(scope, ctx, route, status, received, sent, seconds)

    @staticmethod
    def _log(
        scope: Scope,
        ctx: Context,
        template: str,
        status: int,
        received: int,
        sent: int,
        seconds: float,
    ) -> None:
        path = scope.get("raw_path", b"").decode("latin-1") or scope["path"]
        user = ctx.actor or "-"
        ms = round(seconds * 1000, 2)
        access.info(
            "%s %s %d %d B in, %d B out, %.2f ms, user %s from %s",
            ctx.method,
            path,
            status,
            received,
            sent,
            ms,
            user,
            ctx.address or "-",
            extra={
                "method": ctx.method,
                "route": template,
                "path": path,
                "status": status,
                "bytes_in": received,
                "bytes_out": sent,
                "duration_ms": ms,
                "user": ctx.actor,
                "address": ctx.address,
            },
        )
