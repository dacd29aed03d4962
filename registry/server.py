"""The HTTP protocol `registry serve` runs: uvicorn's httptools protocol with the bounds a
server facing the internet needs and uvicorn does not have.

uvicorn closes a connection idle between requests (keep-alive), and nothing else: a
client may take forever to send a request head, send headers without end, trickle a
body or claim a Content-Length it never sends, or stop reading a response, and hold a
connection, its memory and a task for as long as it likes. Here each of those ends:

- the request head must arrive whole within `http.header_timeout_seconds` of the
  connection (or of the request's first byte, on a kept-alive connection): 408;
- the head may hold at most `http.header_bytes` of URL and headers: 431;
- while the app waits for body bytes, at least `http.body_min_rate` bytes a second must
  come in every window of `http.body_timeout_seconds` (a window in which the app itself
  was not reading does not count): the connection is closed;
- a response the client does not read for `http.send_timeout_seconds`: closed.

It also offers the ASGI zerocopysend extension: a blob's file goes from the page cache to
the socket with sendfile(2) (registry/sendfile.py), Range spans included.

Refusals are written in the registry's error format and logged with the client address.
A malformed request (docker and skopeo send a TLS handshake to a plain-HTTP registry
before each command) is logged once a minute per client address, with what to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from registry.config import HttpSettings, load_settings
from registry.metrics import SENDFILE_BYTES, tally
from registry.sendfile import ZERO_COPY, FileEnded, Stalled, send_span, senders

log = logging.getLogger("registry.http")
_SENT = tally(SENDFILE_BYTES)

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}
_BODY_HEADERS = (b"content-length", b"transfer-encoding")


@functools.cache
def _settings() -> HttpSettings:
    """This worker's HTTP settings, from the same file and environment as its app."""
    return load_settings().http


class _HeadTooLarge(Exception):
    pass


# The first bytes of a TLS record carrying a handshake (a ClientHello): 0x16, then the
# protocol's major version, 3 for SSL 3.0 to TLS 1.3.
_TLS_HANDSHAKE = b"\x16\x03"
_TLS_HINT = (
    "it began with a TLS handshake: the client expects HTTPS on this plain-HTTP port. "
    "Add this registry to the client's insecure registries (Docker: insecure-registries "
    "in /etc/docker/daemon.json; skopeo and podman: --tls-verify=false) or put nginx "
    "with TLS in front (nginx/)"
)


class MalformedRequests:
    """Malformed requests, logged at most once an interval per client address (in each
    worker): every docker command against a plain-HTTP registry begins with one, and
    uvicorn's own line (left out by registry/logs.py) names neither the client nor a cause."""

    def __init__(self, interval: float = 60.0, addresses: int = 4096) -> None:
        self.interval = interval
        self.addresses = addresses  # how many to remember: a bound on the memory held
        self.seen: dict[str, tuple[float, int]] = {}  # address: (last logged, unlogged)

    def note(self, address: str, tls: bool) -> None:
        now = time.monotonic()
        last, unlogged = self.seen.get(address, (-self.interval, 0))
        if now - last < self.interval:
            self.seen[address] = (last, unlogged + 1)
            return
        if len(self.seen) >= self.addresses:
            self.seen = {a: s for a, s in self.seen.items() if now - s[0] < self.interval}
            if len(self.seen) >= self.addresses:  # a flood from many: more lines, not memory
                self.seen.clear()
        self.seen[address] = (now, 0)
        since = f"; {unlogged} more from it since its last line" if unlogged else ""
        log.warning(
            "answered a malformed HTTP request from %s with 400: %s (logged once a minute "
            "per address%s)",
            address,
            _TLS_HINT if tls else "not HTTP/1.1 as the registry reads it",
            since,
        )


_MALFORMED = MalformedRequests()


class _HeldHead:
    """In place of a response's transport from its start to its first body message:
    uvicorn writes the status line and headers, then the body, each with a send(2) of
    its own; held here, they go out in one (manifest GETs on 2 cores: about 5,000 to
    6,400 a second). Everything but write and close is the transport's."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.parts.append(data)

    def flush(self) -> None:
        if self.parts:
            self.transport.write(b"".join(self.parts))
            self.parts.clear()

    def close(self) -> None:  # uvicorn closes a connection it will not keep alive
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


def _kept_alive_for_http10(cycle: RequestResponseCycle, start: Any) -> Any:
    """An HTTP/1.0 response start on a connection its client asked to keep: with
    "Connection: keep-alive", which HTTP/1.0 needs to keep it, when the response says
    where it ends (a Content-Length, or no body); otherwise the connection closes after
    it, as its only end."""
    headers = list(start.get("headers", ()))
    names = {bytes(name).lower() for name, _ in headers}
    if b"connection" in names:
        return start  # the app's own say
    ends = (
        b"content-length" in names
        or cycle.scope["method"] == "HEAD"
        or start["status"] in (204, 304)
    )
    if not ends:
        cycle.keep_alive = False
        return start
    return {**start, "headers": [*headers, (b"connection", b"keep-alive")]}


class GuardedProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bounds = _settings()
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_bytes = 0
        self._send_timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._socket: int | None = None  # the descriptor, when the kernel may send files
        self._sending_file = False
        self._tls = False  # the connection began with a TLS handshake

    # The request head

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and transport.get_extra_info("sslcontext") is None:
            self._socket = sock.fileno()
        self._arm_head()

    def _arm_head(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(
                self.bounds.header_timeout_seconds, self._head_late
            )

    def _head_late(self) -> None:
        self._head_timer = None
        self._refuse(
            408,
            f"the request head did not arrive within {self.bounds.header_timeout_seconds} s "
            "(http.header_timeout_seconds)",
        )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._socket is not None:
            self.scope["extensions"] = {ZERO_COPY: {}}
        self._head_bytes = 0
        self._arm_head()

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.bounds.header_bytes:
            self._refuse(
                431,
                f"the request head is larger than {self.bounds.header_bytes} bytes "
                "(http.header_bytes)",
            )
            raise _HeadTooLarge  # stops the parser; data_received ends in send_400_response

    def send_400_response(self, msg: str) -> None:
        if self._sending_file:  # a write now would land inside the file's bytes
            self._close(f"a malformed request came behind a response in progress: {msg}")
        elif not self._refused:  # a refusal of ours is already on its way
            _MALFORMED.note(self.client[0] if self.client else "a local socket", self._tls)
            super().send_400_response(msg)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self.cycle is None and data.startswith(_TLS_HANDSHAKE):
            self._tls = True
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._cancel("_head_timer")
        previous = self.cycle
        super().on_headers_complete()
        if self.cycle is not previous:
            # This request's send holds the head back for the body (_HeldHead), and takes
            # a file span too where the scope offers ZERO_COPY.
            cycle = self.cycle
            cycle.send = functools.partial(self._send, cycle, cycle.send)  # type: ignore[method-assign]
            if cycle.scope["http_version"] == "1.0" and self.parser.should_keep_alive():
                # An HTTP/1.0 client that asks to keep the connection (ab, old proxies):
                # uvicorn never does, and each request paid a connection's setup. Kept
                # if the response says where it ends (_send); here, so that a shutdown
                # from now on can still end it as uvicorn ends any other.
                cycle.keep_alive = True
        if any(name in _BODY_HEADERS for name, _ in self.headers):
            self._body_bytes = 0
            self._body_timer = self.loop.call_later(
                self.bounds.body_timeout_seconds, self._check_body
            )

    # The request body

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._cancel("_body_timer")
        super().on_message_complete()

    def _check_body(self) -> None:
        """Once a window: the body is complete (stop watching), the app is not reading
        (not the client's fault), or enough came in."""
        self._body_timer = None
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.more_body:
            return
        # Bytes the app has not taken, reading paused, or a client waiting for its
        # 100 Continue: the app is the slow one.
        waiting = not (cycle.body or self.flow.read_paused or cycle.waiting_for_100_continue)
        window = self.bounds.body_timeout_seconds
        if waiting and self._body_bytes < max(1, self.bounds.body_min_rate * window):
            self._close(
                f"the request body came at {self._body_bytes / window:.0f} bytes/s over "
                f"{window} s, less than http.body_min_rate ({self.bounds.body_min_rate})"
            )
            return
        self._body_bytes = 0
        self._body_timer = self.loop.call_later(window, self._check_body)

    # The response

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_timer is None:
            self._send_timer = self.loop.call_later(
                self.bounds.send_timeout_seconds, self._send_stalled
            )

    def resume_writing(self) -> None:
        self._cancel("_send_timer")
        super().resume_writing()

    def _send_stalled(self) -> None:
        self._send_timer = None
        self._close(
            f"the client read nothing of the response for {self.bounds.send_timeout_seconds} s "
            "(http.send_timeout_seconds)"
        )

    async def _send(
        self,
        cycle: RequestResponseCycle,
        send: Callable[[Any], Awaitable[None]],
        message: Any,
    ) -> None:
        """uvicorn's send, with the head written together with the first body message,
        and a file span (ZERO_COPY) after a start with a Content-Length: the kernel sends
        the bytes, then uvicorn ends the response as for a body."""
        if message["type"] == "http.response.start":
            if cycle.keep_alive and cycle.scope["http_version"] == "1.0":
                message = _kept_alive_for_http10(cycle, message)
            cycle.transport = _HeldHead(self.transport)  # type: ignore[assignment]
            await send(message)
            return
        held = cycle.transport
        if isinstance(held, _HeldHead):
            if message["type"] == "http.response.body":
                try:
                    await send(message)  # its writes join the head's
                finally:
                    cycle.transport = held.transport
                    held.flush()
                return
            cycle.transport = held.transport
            held.flush()
        if message["type"] != ZERO_COPY:
            await send(message)
            return
        if not cycle.response_started or cycle.response_complete or cycle.chunked_encoding:
            raise RuntimeError(f"{ZERO_COPY} needs a started response with a Content-Length")
        file = message["file"]
        fd = file if isinstance(file, int) else file.fileno()
        offset = message.get("offset")
        if offset is None:
            offset = os.lseek(fd, 0, os.SEEK_CUR)
        count = message.get("count")
        if count is None:
            count = os.fstat(fd).st_size - offset
        if cycle.scope["method"] == "HEAD":
            count = 0
        if count > cycle.expected_content_length:
            raise RuntimeError("Response content longer than Content-Length")
        if count and not await self._send_span(cycle, fd, offset, count):
            return  # the connection is closed
        cycle.expected_content_length -= count
        await send({"type": "http.response.body", "more_body": message.get("more_body", False)})

    async def _send_span(
        self, cycle: RequestResponseCycle, fd: int, offset: int, count: int
    ) -> bool:
        """Whether the whole span went; if not, the connection is closed or closing."""
        # What uvloop still holds (the status line and headers) goes first.
        waited = 0.0
        while self.transport.get_write_buffer_size() and not self.transport.is_closing():
            if waited > self.bounds.send_timeout_seconds:
                self._send_stalled()
                return False
            await asyncio.sleep(0.01)
            waited += 0.01
        # Not closing: the transport's descriptor is still open, and still this socket.
        if cycle.disconnected or self.transport.is_closing() or self._socket is None:
            return False
        job = functools.partial(
            send_span,
            os.dup(self._socket),
            os.dup(fd),
            offset,
            count,
            stall_seconds=self.bounds.send_timeout_seconds,
            gone=lambda: cycle.disconnected,
        )
        self._sending_file = True
        try:
            sent = await self.loop.run_in_executor(senders(), job)
            _SENT.inc(sent)
            return sent == count
        except Stalled:
            self._send_stalled()
        except FileEnded:
            self._close(
                "a blob's file ended before the span its size promised; "
                "`registry check` finds the blob whose file is short"
            )
        except OSError:  # the client reset the connection: nothing to tell anyone
            cycle.disconnected = True
            self.transport.abort()
        finally:
            self._sending_file = False
        return False

    # Ending

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in ("_head_timer", "_body_timer", "_send_timer"):
            self._cancel(timer)
        super().connection_lost(exc)

    def _cancel(self, name: str) -> None:
        timer = getattr(self, name)
        if timer is not None:
            timer.cancel()
            setattr(self, name, None)

    def _refuse(self, status: int, message: str) -> None:
        """Answer in the error format and close; nothing more of the request is read."""
        if self._refused or self.transport.is_closing():
            return
        if self._sending_file:  # a write now would land inside the file's bytes
            self._close(message)
            return
        self._refused = True
        code = "SIZE_INVALID" if status == 431 else "TIMEOUT"
        body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
        head = (
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n" % (status, _REASONS[status], len(body))
        )
        self._log(message)
        self.transport.write(head + body)
        self.transport.close()

    def _close(self, reason: str) -> None:
        """Reset the connection: a plain close would leave the kernel holding what the
        client never read, and the client waiting on it."""
        self._refused = True
        self._log(reason)
        sock = self.transport.get_extra_info("socket")
        with contextlib.suppress(AttributeError, OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

    def _log(self, reason: str) -> None:
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        log.warning("closed the connection of %s: %s", client, reason)
