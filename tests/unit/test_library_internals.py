"""The private parts of libraries the registry relies on, each named: an upgrade that
renames or drops one fails here, saying which and who needs it, rather than somewhere in
a request. pyproject.toml pins these libraries to the versions tested."""

from __future__ import annotations

import asyncio
import socket
from importlib.metadata import version
from typing import Any

import pytest
import sqlalchemy
import uvicorn
from prometheus_client import CollectorRegistry, Histogram
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from registry.server import GuardedProtocol

pytestmark = pytest.mark.anyio

# registry/server.py: the hooks it overrides, and what it reads of the protocol and of
# a request's cycle.
PROTOCOL_METHODS = (
    "connection_made",
    "connection_lost",
    "data_received",
    "on_message_begin",
    "on_url",
    "on_header",
    "on_headers_complete",
    "on_body",
    "on_message_complete",
    "send_400_response",
    "pause_writing",
    "resume_writing",
)
PROTOCOL_STATE = ("cycle", "flow", "loop", "client", "headers", "transport", "scope", "parser")
CYCLE_STATE = (
    "send",
    "transport",
    "body",
    "more_body",
    "response_started",
    "response_complete",
    "chunked_encoding",
    "expected_content_length",
    "disconnected",
    "waiting_for_100_continue",
    "scope",
    "keep_alive",
)


def missing(found: object, names: tuple[str, ...]) -> list[str]:
    return [name for name in names if not hasattr(found, name)]


def test_the_uvicorn_protocol_hooks_server_py_overrides() -> None:
    gone = missing(HttpToolsProtocol, PROTOCOL_METHODS)
    assert not gone, (
        f"uvicorn {uvicorn.__version__}: HttpToolsProtocol no longer has {gone}; "
        "registry/server.py (GuardedProtocol) overrides them"
    )


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def test_the_uvicorn_state_server_py_reads() -> None:
    """A request through the real protocol: the state it keeps, as server.py reads it."""
    loop = asyncio.get_running_loop()
    config = Config(app=app, lifespan="off", log_level="critical")
    config.load()
    ours, theirs = socket.socketpair()
    protocol = GuardedProtocol(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    await loop.connect_accepted_socket(lambda: protocol, ours)
    reader, writer = await asyncio.open_connection(sock=theirs)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.1 204")
    try:
        gone = missing(protocol, PROTOCOL_STATE)
        assert not gone, (
            f"uvicorn {uvicorn.__version__}: HttpToolsProtocol no longer keeps {gone}; "
            "registry/server.py reads them"
        )
        assert hasattr(protocol.flow, "read_paused"), (
            f"uvicorn {uvicorn.__version__}: FlowControl.read_paused is gone; "
            "registry/server.py's body timeout reads it"
        )
        gone = missing(protocol.cycle, CYCLE_STATE)
        assert not gone, (
            f"uvicorn {uvicorn.__version__}: RequestResponseCycle no longer keeps {gone}; "
            "registry/server.py reads or replaces them"
        )
    finally:
        writer.close()
        protocol.transport.close()


def test_the_prometheus_client_histogram_parts_metrics_py_adds_to() -> None:
    child = Histogram("x_seconds", "x", registry=CollectorRegistry())
    gone = missing(child, ("_upper_bounds", "_buckets", "_sum"))
    assert not gone, (
        f"prometheus_client {version('prometheus_client')}: Histogram no longer has "
        f"{gone}; registry/metrics.py (Timings) adds to them"
    )
    assert child._upper_bounds[-1] == float("inf")
    child._buckets[0].inc(2)
    child._sum.inc(0.5)
    samples = {s.name: s.value for s in child.collect()[0].samples if not s.labels.get("le")}
    assert samples["x_seconds_sum"] == 0.5 and samples["x_seconds_count"] == 2


def test_the_sqlalchemy_bridge_database_py_uses() -> None:
    from sqlalchemy import util

    gone = missing(util, ("await_only", "greenlet_spawn"))
    assert not gone, (
        f"SQLAlchemy {sqlalchemy.__version__}: sqlalchemy.util no longer has {gone}; "
        "registry/metadata/database.py runs asyncpg calls through them"
    )
