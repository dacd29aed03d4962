"""Blob GETs of `registry serve` on the filesystem store go out with sendfile (the ASGI
zerocopysend extension of registry/server.py): whole blobs and Range spans arrive intact,
requests pipelined behind one are answered in order, readers that vanish mid-blob leave
no descriptor behind, and a blob file shorter than the index says gets a 503 before any
byte of a 200."""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from registry.digest import Digest
from registry.metrics import PUBLISH_SECONDS
from registry.storage.base import blob_key
from tests.helpers import scraped
from tests.peers.registry import RegistryProcess

SIZE = 64 * 1024 * 1024
SENT = "registry_http_sendfile_bytes_total"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[RegistryProcess, bytes, str]]:
    server = RegistryProcess(tmp_path / "data", {"REGISTRY_METRICS_ACCESS": "open"}).start()
    data = os.urandom(SIZE)
    digest = digest_of(data)
    r = httpx.post(
        f"{server.url}/v2/team/app/blobs/uploads/",
        params={"digest": digest},
        content=data,
        timeout=60,
    )
    assert r.status_code == 201, r.text
    yield server, data, digest
    server.stop()


def sent_by_kernel(server: RegistryProcess) -> float:
    time.sleep(PUBLISH_SECONDS + 0.5)  # what the worker counted is published
    return scraped(server.get("/metrics").text).get(SENT, 0)


def read_response(sock: socket.socket, pending: bytearray) -> tuple[bytes, dict[str, str], bytes]:
    """One response off a socket with a Content-Length body: status line, headers, body."""
    while b"\r\n\r\n" not in pending:
        pending += sock.recv(65536)
    head, _, rest = bytes(pending).partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.decode().split(":", 1) for line in lines)}
    length = int(headers["content-length"])
    pending[:] = rest
    while len(pending) < length:
        chunk = sock.recv(1 << 20)
        assert chunk, "the connection closed inside a body"
        pending += chunk
    body = bytes(pending[:length])
    del pending[:length]
    return status, headers, body


def test_whole_blobs_and_ranges_arrive_intact_and_by_sendfile(
    served: tuple[RegistryProcess, bytes, str],
) -> None:
    server, data, digest = served
    before = sent_by_kernel(server)
    url = f"/v2/team/app/blobs/{digest}"
    spans = {
        None: (0, SIZE - 1),
        "bytes=0-0": (0, 0),
        "bytes=1000-2000999": (1000, 2000999),
        f"bytes={SIZE - 100}-": (SIZE - 100, SIZE - 1),
        "bytes=-4096": (SIZE - 4096, SIZE - 1),
    }
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for header, (start, end) in spans.items():
            r = client.get(url, headers={"Range": header} if header else {})
            assert r.status_code == (206 if header else 200), r.text
            assert r.content == data[start : end + 1], header
            assert r.headers["content-length"] == str(end - start + 1)
            if header:
                assert r.headers["content-range"] == f"bytes {start}-{end}/{SIZE}"
        # A range past the end is refused in the spec's format; HEAD sends no body.
        r = client.get(url, headers={"Range": f"bytes={SIZE}-"})
        assert r.status_code == 416
        assert r.json()["errors"][0]["code"] == "RANGE_INVALID"
        r = client.head(url)
        assert (r.status_code, r.content, r.headers["content-length"]) == (200, b"", str(SIZE))
    total = sum(end - start + 1 for start, end in spans.values())
    assert sent_by_kernel(server) - before == total


def test_requests_pipelined_behind_a_blob_are_answered_in_order(
    served: tuple[RegistryProcess, bytes, str],
) -> None:
    server, data, digest = served
    get = f"GET /v2/team/app/blobs/{digest} HTTP/1.1\r\nHost: r\r\n"
    requests = [
        get + "\r\n",
        "GET /v2/ HTTP/1.1\r\nHost: r\r\n\r\n",
        get + "Range: bytes=5-9\r\n\r\n",
        f"HEAD /v2/team/app/blobs/{digest} HTTP/1.1\r\nHost: r\r\n\r\n",
        "GET /v2/ HTTP/1.1\r\nHost: r\r\n\r\n",
    ]
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall("".join(requests).encode())
        pending = bytearray()
        status, _, body = read_response(sock, pending)
        assert (status, body == data) == (b"HTTP/1.1 200 OK", True)
        status, _, body = read_response(sock, pending)
        assert (status, body) == (b"HTTP/1.1 200 OK", b"{}")
        status, headers, body = read_response(sock, pending)
        assert (status, body) == (b"HTTP/1.1 206 Partial Content", data[5:10])
        assert headers["content-range"] == f"bytes 5-9/{SIZE}"
        # A HEAD's Content-Length is the blob's, with no body after it.
        while b"\r\n\r\n" not in pending:
            pending += sock.recv(65536)
        head, _, rest = bytes(pending).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK") and b"content-length: %d" % SIZE in head
        pending[:] = rest
        status, _, body = read_response(sock, pending)
        assert (status, body) == (b"HTTP/1.1 200 OK", b"{}")


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_readers_that_vanish_mid_blob_leave_no_descriptor_behind(
    served: tuple[RegistryProcess, bytes, str],
) -> None:
    server, data, digest = served
    assert server.process is not None
    pid = server.process.pid
    request = f"GET /v2/team/app/blobs/{digest} HTTP/1.1\r\nHost: r\r\n\r\n".encode()
    assert server.get("/v2/").status_code == 200
    baseline = open_descriptors(pid)
    for i in range(30):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        sock.sendall(request)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
        if i % 2:  # a reset; the others close politely with the blob half read
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    deadline = time.monotonic() + 10
    while open_descriptors(pid) > baseline and time.monotonic() < deadline:
        time.sleep(0.1)
    assert open_descriptors(pid) <= baseline
    # The next reader gets the whole blob.
    assert httpx.get(f"{server.url}/v2/team/app/blobs/{digest}", timeout=60).content == data


def test_a_blob_file_shorter_than_its_size_is_a_503_not_a_cut_off_200(
    served: tuple[RegistryProcess, bytes, str],
) -> None:
    server, data, digest = served
    path = server.data_dir / "storage" / blob_key(Digest.parse(digest))
    os.truncate(path, SIZE // 2)
    url = f"{server.url}/v2/team/app/blobs/{digest}"
    r = httpx.get(url, timeout=30)
    assert r.status_code == 503
    error = r.json()["errors"][0]
    assert error["code"] == "UNAVAILABLE" and "fewer than the index says" in error["message"]
    # A span within what the file still holds is served.
    r = httpx.get(url, headers={"Range": "bytes=0-99"}, timeout=30)
    assert (r.status_code, r.content) == (206, data[:100])
    assert "fewer than the index says" in server.log.read_text()
