"""Peak server RSS while a large blob is uploaded in one streamed PATCH, and the time taken.

    .venv/bin/python benchmarks/upload_memory.py [--gib 1]

Starts `registry serve` on a free port with a throw-away data folder, samples the server's
resident memory every 20 ms from /proc, and prints idle RSS, peak RSS and throughput.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

CHUNK = 1024 * 1024


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gib", type=float, default=1.0)
    args = parser.parse_args()
    total = int(args.gib * 1024**3)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data_dir = tempfile.mkdtemp(prefix="registry-bench-")
    env = {
        **os.environ,
        "REGISTRY_DATA_DIR": data_dir,
        "REGISTRY_HTTP_PORT": str(port),
        "REGISTRY_HTTP_HOST": "127.0.0.1",
        "REGISTRY_LOG_LEVEL": "warning",
        "REGISTRY_AUTH_ENABLED": "false",
    }
    server = subprocess.Popen([str(Path(sys.executable).parent / "registry"), "serve"], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(base + "/v2/")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        time.sleep(0.5)
        idle = rss_kib(server.pid)
        peak = idle
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, rss_kib(server.pid))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        block = os.urandom(CHUNK)
        hasher = hashlib.sha256()

        def body():
            sent = 0
            while sent < total:
                piece = block[: min(CHUNK, total - sent)]
                hasher.update(piece)
                sent += len(piece)
                yield piece

        start = time.monotonic()
        with httpx.Client(base_url=base, timeout=600) as client:
            location = client.post("/v2/bench/big/blobs/uploads/").headers["Location"]
            r = client.patch(location, content=body())
            r.raise_for_status()
            r = client.put(r.headers["Location"], params={"digest": "sha256:" + hasher.hexdigest()})
            r.raise_for_status()
        elapsed = time.monotonic() - start
        done.set()
        sampler.join()
        print(
            f"uploaded {total / 1024**2:.0f} MiB in {elapsed:.1f} s "
            f"({total / 1024**2 / elapsed:.0f} MiB/s)"
        )
        print(
            f"server RSS idle {idle / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB, "
            f"growth {(peak - idle) / 1024:.1f} MiB"
        )
    finally:
        server.terminate()
        server.wait()
        subprocess.run(["rm", "-rf", data_dir])


if __name__ == "__main__":
    main()
