"""The pull-through mirror against Distribution (Debian's `docker-registry`) as upstream:
a blob's first GET (a miss, fetched while it is served), the same GET again (a hit), and
the upstream alone, with the mirror's peak RSS.

    .venv/bin/python benchmarks/mirror.py [--mib 256]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.memory import PeakRss  # noqa: E402
from tests.peers.distribution import Distribution  # noqa: E402
from tests.peers.registry import RegistryProcess  # noqa: E402


def timed_get(url: str) -> tuple[float, float, int]:
    """(seconds to the first byte, seconds in all, bytes)."""
    start = time.perf_counter()
    first = None
    size = 0
    with httpx.stream("GET", url, timeout=300) as r:
        assert r.status_code == 200, r.status_code
        for chunk in r.iter_bytes(1024 * 1024):
            first = first or time.perf_counter() - start
            size += len(chunk)
    return first or 0.0, time.perf_counter() - start, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-mirror-"))
    (root / "hub").mkdir()
    hub = Distribution(root / "hub").start()
    mirror = RegistryProcess(
        root / "mirror",
        {
            "REGISTRY_MIRROR_ENABLED": "true",
            "REGISTRY_MIRROR_UPSTREAMS": hub.url,
            "REGISTRY_LOG_LEVEL": "warning",
        },
    ).start()
    try:
        data = os.urandom(args.mib * 2**20)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        r = httpx.post(f"{hub.url}/v2/library/bench/blobs/uploads/", timeout=60)
        # Distribution's Location carries its upload state in the query: keep it.
        location = httpx.URL(hub.url).join(r.headers["location"])
        r = httpx.put(location.copy_merge_params({"digest": digest}), content=data, timeout=300)
        assert r.status_code == 201, r.text
        del data
        assert mirror.process is not None
        path = f"/v2/library/bench/blobs/{digest}"
        with PeakRss(mirror.process.pid) as rss:
            rows = [
                ("upstream alone", timed_get(hub.url + path)),
                ("mirror, miss", timed_get(mirror.url + path)),
                ("mirror, hit", timed_get(mirror.url + path)),
            ]
        print(f"{args.mib} MiB blob, Distribution 2.8 upstream, mirror on the filesystem store")
        for label, (first, total, size) in rows:
            rate = size / 2**20 / total
            print(f"  {label:16} first byte {first * 1000:7.1f} ms  {rate:7.1f} MiB/s")
        print(f"  mirror RSS: {rss.idle / 1024:.1f} MiB idle, {rss.peak / 1024:.1f} MiB at peak")
        gets = hub.requests("GET", path)
        print(f"  upstream blob GETs: {gets} (1 from the upstream-alone row, 1 from the miss)")
    finally:
        mirror.stop()
        hub.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
