"""A listening socket of its own in each worker, with SO_REUSEPORT: the kernel spreads
new connections evenly over the workers.

uvicorn binds one socket in its supervisor and every worker accepts from it. A worker
waiting in epoll is woken for each new connection, the first in the socket's wait queue
first, so connections that come one at a time (a client's pool filling up, Docker
daemons arriving) went to one worker: 59 of 64 here (benchmarks/workers.py), and a
harness measured 53 % against 12 % of the CPU. With a socket each, the kernel picks
one by a hash of the connection's addresses and ports.

uvicorn hands its sockets to the workers it spawns by pickling them: `Reserved`, the
supervisor's, is bound (which keeps other programs off the port) but never listens,
and unpickles in a worker as a new socket bound to the same address, which the
worker's server listens on. A replaced worker (SIGHUP, or one that died) gets its own
the same way. What the kernel had queued for a worker that stops is lost unless
`net.ipv4.tcp_migrate_req` is 1, which hands it to another (docker-compose.yml sets
it); a worker accepts as soon as it can, so that queue is short.
"""

from __future__ import annotations

import socket
from typing import Any


def _bound(family: int, address: Any, kind: type[socket.socket] = socket.socket) -> socket.socket:
    sock = kind(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


class Reserved(socket.socket):
    """The supervisor's socket: bound, never listening (the kernel gives connections
    only to listening sockets); a worker's own, once unpickled there."""

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return _bound, (self.family, self.getsockname())


def reserve(host: str, port: int) -> Reserved:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    reserved = _bound(family, (host, port), Reserved)
    assert isinstance(reserved, Reserved)
    return reserved
