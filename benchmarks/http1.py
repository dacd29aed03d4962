"""A bare HTTP/1.1 keep-alive client on asyncio streams, for the small pushes: httpx spent
about 5 ms of CPU per request there and became the bottleneck (a full core for the client
while either registry idled). This one does only what those requests need: a request with
a body, and a response with Content-Length."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, base: str) -> Connection:
        url = urlsplit(base)
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        return cls(reader, writer)

    async def request(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        content_type: str = "application/octet-stream",
    ) -> tuple[int, dict[str, str], bytes]:
        """Send one request; the status, headers (lower-case names) and body of its answer."""
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: bench\r\n{extra}"
            f"Content-Length: {len(body)}\r\nContent-Type: {content_type}\r\n\r\n"
        )
        self.writer.write(head.encode("latin-1"))
        self.writer.write(body)
        await self.writer.drain()
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *lines = raw.decode("latin-1").split("\r\n")
        answer = {}
        for line in lines:
            if line:
                name, _, value = line.partition(":")
                answer[name.strip().lower()] = value.strip()
        if "chunked" in answer.get("transfer-encoding", ""):
            raise RuntimeError(f"{method} {target}: chunked answers are not supported here")
        length = int(answer.get("content-length", "0"))
        content = await self.reader.readexactly(length) if length else b""
        return int(status_line.split()[1]), answer, content

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def rate(
    base: str, items: list[T], clients: int, send: Callable[[Connection, T], Awaitable[None]]
) -> float:
    """Items per second: `send(connection, item)` for every item, by `clients` keep-alive
    connections at once, each taking the next item when it is done with one."""

    async def run() -> float:
        queue = list(items)

        async def worker() -> None:
            conn = await Connection.open(base)
            while queue:
                await send(conn, queue.pop())
            await conn.close()

        begun = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return len(items) / (time.perf_counter() - begun)

    return asyncio.run(run())
