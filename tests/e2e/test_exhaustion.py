"""Resource exhaustion: 1,000 hostile connections against `registry serve` (idle, heads
and bodies trickled a byte at a time, a Content-Length never sent, a large response never
read, heads too large). A well-behaved client's manifest GETs stay fast meanwhile, memory
stays bounded, and every hostile connection is closed by a bound of registry/server.py."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import socket
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.peers.registry import RegistryProcess
from tests.peers.tools import ahead_of_other_work

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
PER_KIND = 200
BOUND = 2  # seconds, for every timeout below
BIG = 32 * 1024 * 1024


@pytest.fixture(autouse=True)
def _ahead() -> Iterator[None]:
    """Every test here bounds the server's timings (latencies, when a connection is
    closed): they are the server's, not those of the tests the parallel suite runs
    beside it, so this test and the servers it starts go first."""
    with ahead_of_other_work():
        yield


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def rss_kib(pid: int) -> int:
    """Resident memory of a process and its children (the uvicorn workers)."""
    total = 0
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for each in [pid, *map(int, children)]:
        with contextlib.suppress(FileNotFoundError):
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def seed(url: str) -> str:
    """A manifest to GET and a large blob to not read; returns the blob's digest."""
    config, blob = b"{}", bytes(range(256)) * (BIG // 256)
    with httpx.Client(base_url=url, timeout=60) as client:
        for data in (config, blob):
            r = client.post(
                "/v2/team/app/blobs/uploads/", params={"digest": digest_of(data)}, content=data
            )
            assert r.status_code == 201, r.text
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest_of(config),
                "size": len(config),
            },
            "layers": [],
        }
        r = client.put(
            "/v2/team/app/manifests/v1",
            content=json.dumps(manifest).encode(),
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert r.status_code == 201, r.text
    return digest_of(blob)


async def hostile(port: int, kind: str, blob: str) -> float | None:
    """Open one hostile connection of `kind`; returns the seconds until the server closed
    it (None if it never did)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
    started = time.monotonic()
    heads = {
        "body-trickle": b"POST /v2/team/app/blobs/uploads/?digest="
        + digest_of(b"x").encode()
        + b" HTTP/1.1\r\nHost: r\r\nContent-Length: 1000000\r\n\r\n",
        "short-body": b"POST /v2/team/app/blobs/uploads/?digest="
        + digest_of(b"x").encode()
        + b" HTTP/1.1\r\nHost: r\r\nContent-Length: 1000000\r\n\r\n0123456789",
        "no-reading": f"GET /v2/team/app/blobs/{blob} HTTP/1.1\r\nHost: r\r\n\r\n".encode(),
        "huge-head": b"GET /v2/ HTTP/1.1\r\nHost: r\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n",
    }
    try:
        if kind in heads:
            writer.write(heads[kind])
        elif kind == "head-trickle":
            writer.write(b"GET /v2/ HTTP/1.1\r\n")
        deadline = started + 6 * BOUND
        while time.monotonic() < deadline:
            if kind == "no-reading":
                # Never read; ask the kernel whether the server has given up on us (its
                # reset ends the connection's ESTABLISHED state, 1).
                await asyncio.sleep(0.25)
                if sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] != 1:
                    return time.monotonic() - started
                continue
            if kind in ("head-trickle", "body-trickle"):
                writer.write(b"X")
            try:
                data = await asyncio.wait_for(reader.read(65536), 0.5)
            except TimeoutError:
                continue
            except ConnectionError:
                return time.monotonic() - started
            if not data:
                return time.monotonic() - started
        return None
    finally:
        writer.close()


async def well_behaved(url: str, count: int) -> list[float]:
    latencies = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for _ in range(count):
            began = time.monotonic()
            r = await client.get("/v2/team/app/manifests/v1")
            assert r.status_code == 200
            latencies.append(time.monotonic() - began)
            await asyncio.sleep(0.01)
    return latencies


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


@dataclass
class Wave:
    during: list[float]  # manifest GET latencies while the hostile connections are open
    closed: dict[str, list[float | None]]
    peak_kib: int  # memory at the height of the wave, over the memory before it
    after_kib: int  # memory once every hostile connection is gone


async def wave(server: RegistryProcess, pid: int, blob: str) -> Wave:
    before = rss_kib(pid)
    kinds = ["idle", "head-trickle", "body-trickle", "short-body", "no-reading"]
    groups = {kind: [hostile(server.port, kind, blob) for _ in range(PER_KIND)] for kind in kinds}
    groups["huge-head"] = [hostile(server.port, "huge-head", blob) for _ in range(10)]
    tasks = {kind: [asyncio.create_task(c) for c in group] for kind, group in groups.items()}
    await asyncio.sleep(0.5)  # all of them open
    peak = rss_kib(pid)
    during = await well_behaved(server.url, 200)
    peak = max(peak, rss_kib(pid))
    closed = {kind: list(await asyncio.gather(*group)) for kind, group in tasks.items()}
    await asyncio.sleep(0.5)
    return Wave(during, closed, peak - before, rss_kib(pid))


def test_a_thousand_hostile_connections(tmp_path: Path) -> None:
    env = {
        f"REGISTRY_HTTP_{key}": str(BOUND)
        for key in (
            "HEADER_TIMEOUT_SECONDS",
            "BODY_TIMEOUT_SECONDS",
            "SEND_TIMEOUT_SECONDS",
            "KEEPALIVE_SECONDS",
        )
    }
    env["REGISTRY_HTTP_BODY_MIN_RATE"] = "100"
    server = RegistryProcess(tmp_path / "data", env).start()
    try:
        blob = seed(server.url)
        assert server.process is not None
        pid = server.process.pid

        async def run() -> tuple[list[float], list[Wave]]:
            before = await well_behaved(server.url, 200)
            return before, [await wave(server, pid, blob) for _ in range(2)]

        before, waves = asyncio.run(run())
    finally:
        server.stop()

    during = [latency for w in waves for latency in w.during]
    report = (
        f"manifest GET p50/p99 before {statistics.median(before) * 1000:.1f}/"
        f"{p99(before) * 1000:.1f} ms, during {statistics.median(during) * 1000:.1f}/"
        f"{p99(during) * 1000:.1f} ms; memory at the height of each wave "
        + ", ".join(f"+{w.peak_kib / 1024:.0f} MiB" for w in waves)
        + f"; after the second wave {(waves[1].after_kib - waves[0].after_kib) / 1024:+.0f} MiB"
    )
    print(report)
    for w in waves:
        for kind, times in w.closed.items():
            never = sum(1 for t in times if t is None)
            assert never == 0, f"{never} {kind} connections were never closed ({report})"
            slowest = max(t for t in times if t is not None)
            # A window in which the app was not yet reading does not count against the
            # client (registry/server.py): 200 uploads that start at once wait on one
            # SQLite writer, longer when other tests share the disk. Seen: 8.08 s for a
            # trickled body in the parallel suite. Unbounded, it would outlive the 12 s.
            assert slowest < 5 * BOUND, (kind, slowest)
    # Each was closed by the bound meant for it, and the log says so to the operator.
    log = server.log.read_text()
    assert log.count("did not arrive within") >= 2 * 2 * PER_KIND
    assert log.count("http.body_min_rate") >= 2 * 2 * PER_KIND
    assert log.count("read nothing of the response") >= 2 * PER_KIND
    assert log.count("http.header_bytes") >= 2 * 10
    # The well-behaved client hardly notices.
    assert statistics.median(during) < 3 * statistics.median(before) + 0.005, report
    # (The p99 is the moments when a thousand timers end their connections at once.)
    assert p99(during) < 0.5, report
    # Memory: a response nobody reads holds its pieces in flight (about 3 MiB, with what
    # the allocator keeps of them) until the send timeout; every other kind next to
    # nothing. A second wave mostly reuses what the first took (a leak would add as much
    # again; the allocator's own keeping moves it by up to a third).
    for w in waves:
        assert w.peak_kib < PER_KIND * 5 * 1024 + 64 * 1024, report
    assert waves[1].after_kib - waves[0].after_kib < waves[0].peak_kib / 2, report


def test_refusals_say_what_bound_was_hit(tmp_path: Path) -> None:
    server = RegistryProcess(
        tmp_path / "data", {"REGISTRY_HTTP_HEADER_TIMEOUT_SECONDS": "1"}
    ).start()
    try:
        for sent, status, words in (
            (b"GET /v2/ HTTP/1.1\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n", 431, b"32768"),
            (b"GET /v2/ HTTP/1.1\r\nHost: r\r\n", 408, b"http.header_timeout_seconds"),
        ):
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.sendall(sent)
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 %d " % status), answer[:200]
            assert json.loads(body)["errors"][0]["message"].encode().count(words) == 1
        # A request within the bounds is served as ever on a kept-alive connection.
        with httpx.Client(base_url=server.url) as client:
            for _ in range(3):
                assert client.get("/v2/", headers={"X-Fine": "a" * 20_000}).status_code == 200
                time.sleep(1.2)  # longer than the head timeout, idle between requests
    finally:
        server.stop()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_request_that_never_finishes_holds_a_stop_for_drain_seconds_only(
    tmp_path: Path, workers: str
) -> None:
    """On SIGTERM the requests in flight get http.drain_seconds to finish, then are
    ended with a 503 to retry: a PATCH that promised a body and sends one byte of it
    (which the body bound would let live for a minute) does not hold the stop, in the
    supervisor (two workers) or the single process."""
    env = {"REGISTRY_HTTP_DRAIN_SECONDS": "2", "REGISTRY_HTTP_WORKERS": workers}
    server = RegistryProcess(tmp_path / "data", env).start()
    assert server.process is not None
    try:
        session = httpx.post(f"{server.url}/v2/team/app/blobs/uploads/")
        assert session.status_code == 202, session.text
        path = httpx.URL(server.url).join(session.headers["location"]).raw_path.decode()
        stuck = socket.create_connection(("127.0.0.1", server.port))
        stuck.sendall(
            f"PATCH {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {1024 * 1024}\r\n\r\nx".encode()
        )
        time.sleep(1)  # the request is in the app, reading its body
        started = time.monotonic()
        server.process.terminate()
        server.process.wait(timeout=60)
        waited = time.monotonic() - started
        assert 2 <= waited < 10, waited
        answer = b""
        while chunk := stuck.recv(65536):
            answer += chunk
        stuck.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 "), answer
        assert b"retry-after: 1" in head.lower()
        assert json.loads(body)["errors"][0]["code"] == "UNAVAILABLE"
        assert "http.drain_seconds ran out" in server.log.read_text()
    finally:
        server.stop()
