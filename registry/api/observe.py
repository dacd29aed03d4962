"""What every request passes through first: its context (registry.context: a request
ID, the client's address, then who the caller is), an `X-Request-ID` on the answer (and
on every /v2/ answer, error or not, the `Docker-Distribution-API-Version` the spec
names), an error nothing else answered as a 500 in the spec's format, and when it ends
its metrics (registry.metrics) and one access log line.

A request ID comes from the client only through a trusted proxy (api/forwarded.py marks
those requests), which is how nginx's `$request_id` reaches our logs; otherwise one is
made here. Either way it is returned, and put on every log line written meanwhile.
"""

from __future__ import annotations

import functools
import itertools
import re
import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry import logs
from registry.api.errors import unexpected_error
from registry.api.forwarded import TRUSTED_PEER
from registry.context import Context, using
from registry.metrics import (
    HTTP_DURATION,
    HTTP_REQUEST_BYTES,
    HTTP_REQUESTS,
    HTTP_RESPONSE_BYTES,
    IN_FLIGHT,
    tally,
    timings,
)
from registry.sendfile import ZERO_COPY

# Methods are labels of the request metrics as they are; any other is "other".
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# What a request ID from a proxy may look like: nginx's are 32 hex digits.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


# Request IDs made here: this process's random prefix and a count, unique across
# processes without a call for random bytes per request (uuid4 is a system call each).
_PREFIX = uuid.uuid4().hex[:16]
_COUNT = itertools.count()
_WANTED = (b"x-request-id", b"host", b"user-agent")
_API_VERSION = (b"docker-distribution-api-version", b"registry/2.0")


def _headers(scope: Scope) -> dict[bytes, str]:
    """The request headers this middleware reads, in one pass."""
    return {k: v.decode("latin-1") for k, v in scope["headers"] if k in _WANTED}


@functools.lru_cache(maxsize=4096)
def _series(method: str, route: str, status: int) -> tuple[Any, Any, Any, Any]:
    """A request kind's buffers (metrics.tally and timings: a lookup each)."""
    return (
        tally(HTTP_REQUESTS, method, route, str(status)),
        timings(HTTP_DURATION, method, route),
        tally(HTTP_REQUEST_BYTES, route),
        tally(HTTP_RESPONSE_BYTES, route),
    )


class Observe:
    def __init__(self, app: ASGIApp, *, access_log: bool) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        given = headers.get(b"x-request-id") if scope.get(TRUSTED_PEER) else None
        if given and _REQUEST_ID.fullmatch(given):
            request_id = given
        else:
            request_id = f"{_PREFIX}{next(_COUNT):016x}"
        client = scope.get("client")
        ctx = Context(
            actor_kind="anonymous",
            actor="",
            request_id=request_id,
            address=client[0] if client else None,
            host=headers.get(b"host"),
            scheme=scope.get("scheme", "http"),
            method=scope["method"],
            user_agent=headers.get(b"user-agent", "")[:255] or None,
        )
        status = 0  # until the answer starts
        sent = received = 0
        stamped = [(b"x-request-id", request_id.encode())]
        if scope["path"].startswith("/v2"):
            stamped.append(_API_VERSION)

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            return message

        async def stamping_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), *stamped]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            elif message["type"] == ZERO_COPY:
                sent += message.get("count") or 0
            await send(message)

        start = time.perf_counter()
        IN_FLIGHT.value += 1
        with using(ctx):
            try:
                await self.app(scope, counting_receive, stamping_send)
            except Exception:
                if status:
                    raise  # too late for an answer of its own
                # Answered here rather than by Starlette's outermost ServerErrorMiddleware,
                # so that the 500 has the request ID and the API version, and is logged
                # and counted with them (once: nothing is raised on to uvicorn).
                answer = await unexpected_error(Request(scope), Exception())
                await answer(scope, receive, stamping_send)
            finally:
                IN_FLIGHT.value -= 1
                seconds = time.perf_counter() - start
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                method = ctx.method if ctx.method in _METHODS else "other"
                requests, duration, bytes_in, bytes_out = _series(method, route, status)
                requests.inc()
                duration.observe(seconds)
                if received:
                    bytes_in.inc(received)
                if sent:
                    bytes_out.inc(sent)
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
        fields = {
            "method": ctx.method,
            "route": template,
            "path": path,
            "status": status,
            "bytes_in": received,
            "bytes_out": sent,
            "duration_ms": ms,
            "user": ctx.actor,
            "address": ctx.address,
        }
        args = (ctx.method, path, status, received, sent, ms, user, ctx.address or "-")
        logs.access(fields, args)
