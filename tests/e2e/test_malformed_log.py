"""Every docker or skopeo command against a plain-HTTP registry first sends a TLS
handshake. Each is answered 400 and logged once a minute per client address, with the
address and what to do (registry/server.py), never as uvicorn's line without either."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.server import MalformedRequests
from tests.e2e.test_faults import wait_healthy
from tests.peers.registry import RegistryProcess


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RegistryProcess]:
    process = RegistryProcess(tmp_path / "data").start()
    try:
        wait_healthy(process)
        yield process
    finally:
        process.stop()


def tls_hello(server: RegistryProcess, source: str) -> str:
    """A TLS handshake from `source` to the plain port: what the client's TLS says."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", server.port), 5, (source, 0)) as raw,
        pytest.raises(ssl.SSLError) as refused,
    ):
        context.wrap_socket(raw, server_hostname="registry.test")
    return str(refused.value)


def garbage(server: RegistryProcess, source: str) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), 5, (source, 0)) as raw:
        raw.sendall(b"\x00\x01 not a request\r\n\r\n")
        return raw.recv(4096)


def lines(server: RegistryProcess, text: str) -> list[str]:
    return [line for line in server.log.read_text().splitlines() if text in line]


def test_a_tls_handshake_is_logged_once_a_minute_per_address_with_the_hint(
    server: RegistryProcess,
) -> None:
    for _ in range(5):
        # The server's answer is plain HTTP, which no TLS record can be.
        assert "WRONG_VERSION_NUMBER" in tls_hello(server, "127.0.0.1")
    tls_hello(server, "127.0.0.2")
    assert garbage(server, "127.0.0.3").startswith(b"HTTP/1.1 400 ")
    server.get("/v2/")  # the access line of a request after them: the log is written

    assert lines(server, "Invalid HTTP request received") == []
    noted = lines(server, "answered a malformed HTTP request from")
    assert len(noted) == 3, noted
    first, second, third = noted
    assert "from 127.0.0.1 with 400: it began with a TLS handshake" in first
    assert "insecure-registries" in first and "nginx" in first
    assert "from 127.0.0.2 with 400: it began with a TLS handshake" in second
    assert "from 127.0.0.3 with 400: not HTTP/1.1" in third
    assert "insecure" not in third


def test_the_next_line_counts_what_was_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    notes = MalformedRequests(interval=0.3)
    with caplog.at_level("WARNING", "registry.http"):
        for _ in range(4):
            notes.note("192.0.2.1", tls=True)
        time.sleep(0.4)
        notes.note("192.0.2.1", tls=True)
    first, second = (record.getMessage() for record in caplog.records)
    assert "since its last line" not in first
    assert "; 3 more from it since its last line" in second


def test_few_addresses_are_held() -> None:
    notes = MalformedRequests(interval=0.3, addresses=2)
    notes.note("192.0.2.1", tls=False)
    time.sleep(0.4)
    notes.note("192.0.2.2", tls=False)
    notes.note("192.0.2.3", tls=False)  # over the bound: the stale one goes
    assert set(notes.seen) == {"192.0.2.2", "192.0.2.3"}
    notes.note("192.0.2.4", tls=False)  # none stale: all go, the memory stays bounded
    assert set(notes.seen) == {"192.0.2.4"}
