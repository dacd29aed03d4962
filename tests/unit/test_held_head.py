"""registry/server.py writes a response's head together with its first body message: one
write to the socket for a manifest GET instead of two. Driven over a real socket pair,
with the real protocol and the event loop's own transport, counting the writes that reach it."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from registry.server import GuardedProtocol

pytestmark = pytest.mark.anyio


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """/small: one body; /stream: three pieces; /fail: a start, then an error."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    headers = [(b"content-type", b"text/plain")]
    if path != "/stream":
        headers.append((b"content-length", b"5"))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if path == "/fail":
        raise RuntimeError("failed after the start")
    if path == "/stream":
        for piece in (b"one ", b"two ", b"three"):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    await send({"type": "http.response.body", "body": b"hello"})


class CountingTransport:
    """The event loop's transport, with a record of each write that reaches it."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


async def exchange(request: bytes) -> tuple[bytes, list[bytes]]:
    """Everything the server sends for `request` until it closes or goes quiet, and the
    writes it made."""
    loop = asyncio.get_running_loop()
    config = Config(app=app, lifespan="off", log_level="critical")
    config.load()
    ours, theirs = socket.socketpair()
    protocol = GuardedProtocol(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    await loop.connect_accepted_socket(lambda: protocol, ours)
    counting = CountingTransport(protocol.transport)
    protocol.transport = counting  # type: ignore[assignment]
    reader, writer = await asyncio.open_connection(sock=theirs)
    writer.write(request)
    received = b""
    while True:
        try:
            chunk = await asyncio.wait_for(reader.read(65536), 0.5)
        except TimeoutError:
            break
        if not chunk:
            break
        received += chunk
    writer.close()
    protocol.transport.close()
    return received, counting.writes


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_a_small_response_goes_out_in_one_write(method: str) -> None:
    received, writes = await exchange(f"{method} /small HTTP/1.1\r\nhost: x\r\n\r\n".encode())
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"content-length: 5" in head
    assert body == (b"hello" if method == "GET" else b"")
    assert writes == [received]


async def test_pipelined_requests_are_answered_in_order_one_write_each() -> None:
    request = b"GET /small HTTP/1.1\r\nhost: x\r\n\r\n"
    received, writes = await exchange(request * 3)
    assert received.count(b"HTTP/1.1 200 OK") == 3
    assert received.count(b"hello") == 3
    assert len(writes) == 3


async def test_a_connection_not_kept_alive_gets_the_whole_response_before_closing() -> None:
    received, writes = await exchange(
        b"GET /small HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    assert received.endswith(b"\r\n\r\nhello")
    assert len(writes) == 1


async def test_a_streamed_response_sends_its_head_with_the_first_piece_only() -> None:
    received, writes = await exchange(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
    assert b"transfer-encoding: chunked" in received
    assert received.endswith(b"4\r\none \r\n4\r\ntwo \r\n5\r\nthree\r\n0\r\n\r\n")
    assert writes[0].startswith(b"HTTP/1.1 200 OK") and writes[0].endswith(b"4\r\none \r\n")
    assert len(writes) == 4


async def test_an_app_failing_after_the_start_still_sends_the_head_then_closes() -> None:
    received, _ = await exchange(b"GET /fail HTTP/1.1\r\nhost: x\r\n\r\n")
    # uvicorn closes a connection whose response broke off; the head it had is sent first.
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert received.endswith(b"\r\n\r\n")


async def test_an_http10_client_that_asks_keeps_its_connection_when_a_response_says_its_end() -> (
    None
):
    """ab and old proxies speak HTTP/1.0 with "Connection: keep-alive"; uvicorn closed
    the connection after each response, so each request paid a connection's setup."""
    asked = b"HEAD /small HTTP/1.0\r\nconnection: keep-alive\r\n\r\nGET /small HTTP/1.0\r\n"
    received, _ = await exchange(asked + b"connection: keep-alive\r\n\r\n")
    first, second = received.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert b"connection: keep-alive" in first and b"hello" not in first
    assert b"connection: keep-alive" in second and second.endswith(b"\r\n\r\nhello")


async def test_an_http10_connection_closes_when_not_asked_or_when_only_its_end_ends_a_body() -> (
    None
):
    received, _ = await exchange(b"GET /small HTTP/1.0\r\n\r\nGET /small HTTP/1.0\r\n\r\n")
    assert received.count(b"HTTP/1.1 200 OK") == 1 and b"connection: close" in received
    # A streamed body (no Content-Length) ends where the connection does.
    asked = b"GET /stream HTTP/1.0\r\nconnection: keep-alive\r\n\r\n"
    received, _ = await exchange(asked + b"GET /small HTTP/1.0\r\n\r\n")
    assert received.count(b"HTTP/1.1 200 OK") == 1 and b"connection: close" in received
