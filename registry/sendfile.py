"""A span of a file written to a socket by the kernel (sendfile(2)): the bytes go from the
page cache to the socket without passing through Python.

uvloop has no `loop.sendfile` and refuses to watch a descriptor its transport owns, so
the copy runs in a thread of its own, on a duplicate of the socket's descriptor (the
number cannot be reused under the thread if the transport closes meanwhile), waiting
with poll(2) whenever the socket's buffer is full. A thread blocked in poll costs a
stack and nothing else; each transfer in progress holds one.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

# The ASGI extension (asgi.readthedocs.io, "Zero Copy Send") the server offers in a
# request's scope and the app sends a file span with.
ZERO_COPY = "http.response.zerocopysend"

# Transfers in progress at once in a worker; more wait for one to end. Behind nginx
# (X-Accel-Redirect) the registry sends no blob bytes at all, so this bounds only a
# registry serving clients directly.
SENDERS = 256
_POLL_MS = 250  # how often a waiting thread looks whether the client went away

_pool: ThreadPoolExecutor | None = None


class Stalled(Exception):
    """The client read nothing for the send timeout."""


class FileEnded(Exception):
    """The file ended before the span did: it was truncated under us."""


def senders() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:  # one per worker process, made on its first transfer
        _pool = ThreadPoolExecutor(SENDERS, thread_name_prefix="registry-sendfile")
    return _pool


def send_span(
    sock: int,
    file: int,
    offset: int,
    count: int,
    *,
    stall_seconds: float,
    gone: Callable[[], bool],
) -> int:
    """Send `count` bytes of `file` from `offset` to the non-blocking socket `sock`; blocks,
    so it runs in a sender thread, and closes both descriptors (duplicates the thread
    owns: whatever the event loop closes meanwhile, these numbers stay ours). Returns the
    bytes sent, fewer only when `gone()` said the connection ended. Raises Stalled,
    FileEnded, or the socket's OSError (the client reset the connection)."""
    try:
        poller = select.poll()
        poller.register(sock, select.POLLOUT)
        sent = 0
        moved = time.monotonic()
        while sent < count and not gone():
            try:
                n = os.sendfile(sock, file, offset + sent, count - sent)
            except BlockingIOError:
                if not poller.poll(_POLL_MS) and time.monotonic() - moved > stall_seconds:
                    raise Stalled from None
                continue
            if n == 0:
                raise FileEnded
            sent += n
            moved = time.monotonic()
        return sent
    finally:
        os.close(sock)
        os.close(file)
