"""How the load spreads over a `registry serve`'s workers: manifest GETs on 64 keep-alive
connections, and the CPU each worker spent meanwhile.

    .venv/bin/python benchmarks/workers.py [--workers 2] [--seconds 10] [--database postgresql]

Two ways of opening the connections: all at once (wrk), and one at a time, 20 ms apart,
as a client's pool fills up or Docker daemons arrive (an asyncio client, which then
sends GETs on each in turn). Prints the request rate, how many connections each worker
took and each worker's share of a core; the ratio of the busiest worker to the least
busy is what issue 36 bounds (within 1.5 : 1).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.compare import DOCKER_MANIFEST, push_image, wrk  # noqa: E402
from benchmarks.http1 import Connection  # noqa: E402
from tests.peers.postgres import PostgresServer  # noqa: E402
from tests.peers.registry import (  # noqa: E402
    RegistryProcess,
    connections_by_worker,
    workers_of,
)

_TICKS = os.sysconf("SC_CLK_TCK")
_ACCEPT = {"Accept": DOCKER_MANIFEST}


def cpu_seconds(pid: int) -> float:
    """User and system time the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def gradual(
    url: str, pids: list[int], seconds: int, connections: int
) -> tuple[float, list[int], list[float]]:
    """Requests a second, connections by worker, and each worker's share of a core:
    connections opened one at a time, then GETs on each for `seconds`."""
    target = httpx.URL(url)
    path = target.raw_path.decode()

    socks = []
    for _ in range(connections):
        # Opened and used once outside an event loop, as a client that comes and asks,
        # then another (an asyncio client opening them did not show the skew).
        sock = socket.create_connection((target.host, target.port or 80))
        sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: bench\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        socks.append(sock)
        time.sleep(0.02)

    async def run() -> tuple[float, list[int], list[float]]:
        opened = [Connection(*await asyncio.open_connection(sock=sock)) for sock in socks]
        spread = connections_by_worker(target.port or 80, pids)
        before = [cpu_seconds(pid) for pid in pids]
        started = time.monotonic()
        done = 0

        async def loop(conn: Connection) -> None:
            nonlocal done
            while time.monotonic() - started < seconds:
                status, _, _ = await conn.request("GET", path, headers=_ACCEPT)
                assert status == 200, status
                done += 1
            await conn.close()

        await asyncio.gather(*(loop(conn) for conn in opened))
        elapsed = time.monotonic() - started
        shares = [(cpu_seconds(pid) - b) / elapsed for pid, b in zip(pids, before, strict=True)]
        return done / elapsed, spread, shares

    return asyncio.run(run())


def burst(url: str, pids: list[int], seconds: int, connections: int) -> tuple[float, list[float]]:
    """Requests a second, and each worker's share of a core, over one wrk run."""
    before = [cpu_seconds(pid) for pid in pids]
    started = time.monotonic()
    rate = wrk(url, seconds, connections, accept=DOCKER_MANIFEST)
    elapsed = time.monotonic() - started
    return rate, [(cpu_seconds(pid) - b) / elapsed for pid, b in zip(pids, before, strict=True)]


def _spread(shares: list[float]) -> str:
    busiest, least = max(shares), min(shares)
    return (
        "workers' CPU "
        + " / ".join(f"{share:.0%}" for share in shares)
        + f"; busiest : least = {busiest / least if least else float('inf'):.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    postgres = None
    env = {"REGISTRY_HTTP_WORKERS": str(args.workers), "REGISTRY_LOG_LEVEL": "warning"}
    if args.database == "postgresql":
        postgres = PostgresServer(private=True, durable=True)
        postgres.execute("CREATE DATABASE registry_bench")
        env["REGISTRY_DATABASE_URL"] = postgres.url_for("registry_bench")
    server = RegistryProcess(root / "data", env).start()
    try:
        assert server.process is not None
        with httpx.Client(timeout=60) as client:
            push_image(client, server.url, "bench/app", "latest", b"small layer")
        while len(pids := workers_of(server.process.pid)) < args.workers:
            time.sleep(0.1)
        url = f"{server.url}/v2/bench/app/manifests/latest"
        for _ in range(args.repeats):
            rate, shares = burst(url, pids, args.seconds, args.connections)
            print(f"all at once (wrk): {rate:,.0f} req/s; {_spread(shares)}")
        for _ in range(args.repeats):
            rate, spread, shares = gradual(url, pids, args.seconds, args.connections)
            print(
                f"one at a time: {rate:,.0f} req/s; connections by worker "
                f"{'/'.join(map(str, spread))}; {_spread(shares)}"
            )
    finally:
        server.stop()
        if postgres is not None:
            postgres.stop()


if __name__ == "__main__":
    main()
