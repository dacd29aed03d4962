"""Blob GET throughput through nginx: the registry authorizing each GET and answering
X-Accel-Redirect, next to nginx serving the same file statically, and next to the
registry streaming the blob itself (no nginx).

    .venv/bin/python benchmarks/nginx_blob.py [--mib 256] [--seconds 10] [--connections 4]

nginx runs the shipped nginx/registry.conf.template (rendered as tests/peers/nginx.py does,
with one more location that serves the blob folder statically); `registry serve` runs with
auth off, 2 workers, on the filesystem store. The load generator is wrk (Debian's), which
reads and discards the bodies; it prints what wrk reports, per path.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.peers.nginx import RegistryNginx  # noqa: E402
from tests.peers.registry import RegistryProcess  # noqa: E402
from tests.peers.tls import self_signed  # noqa: E402

STATIC = """
    location /static/ {
        alias %s/blobs/;
        sendfile on;
        tcp_nopush on;
    }
"""


def wrk(url: str, seconds: int, connections: int) -> tuple[float, float]:
    """(requests/s, MiB/s) as wrk measures them."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    amount, unit = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out).groups()  # type: ignore[union-attr]
    scale = {"B": 1 / 2**20, "KB": 1 / 1024, "MB": 1, "GB": 1024}[unit]
    return rate, float(amount) * scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
    storage = root / "storage"
    registry = RegistryProcess(
        root / "data",
        {
            "REGISTRY_STORAGE_ROOT": str(storage),
            "REGISTRY_STORAGE_ACCEL_REDIRECT": "/_blobs/",
            "REGISTRY_HTTP_WORKERS": "2",
            "REGISTRY_LOG_LEVEL": "warning",
        },
    ).start()
    plain = RegistryProcess(
        root / "plain",
        {
            "REGISTRY_STORAGE_ROOT": str(storage),
            "REGISTRY_HTTP_WORKERS": "2",
            "REGISTRY_LOG_LEVEL": "warning",
        },
    )
    plain.env["REGISTRY_DATABASE_URL"] = f"sqlite:///{root / 'data' / 'registry.db'}"
    plain.start()
    cert, key = self_signed(root / "tls")
    nginx = RegistryNginx(root / "nginx", [registry.port], storage, cert, key)
    conf = nginx.root / "nginx.conf"
    text = conf.read_text()
    # The static location goes into the same server block, before its closing brace.
    at = text.rindex("}", 0, text.rindex("}"))
    conf.write_text(text[:at] + STATIC % storage + text[at:])
    nginx.start()
    try:
        data = os.urandom(args.mib * 2**20)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        r = httpx.post(
            f"{registry.url}/v2/bench/blob/blobs/uploads/",
            params={"digest": digest},
            content=data,
            timeout=300,
        )
        assert r.status_code == 201, r.text
        del data
        hex_ = digest.split(":")[1]
        paths = {
            "nginx static": f"{nginx.url}/static/sha256/{hex_[:2]}/{hex_}",
            "nginx + X-Accel-Redirect": f"{nginx.url}/v2/bench/blob/blobs/{digest}",
            "registry streaming (no nginx)": f"{plain.url}/v2/bench/blob/blobs/{digest}",
        }
        print(f"{args.mib} MiB blob, wrk -t2 -c{args.connections} -d{args.seconds}s")
        results = {}
        for label, url in paths.items():
            results[label] = wrk(url, args.seconds, args.connections)
            rate, mib = results[label]
            print(f"  {label:32} {rate:8.2f} req/s {mib:9.1f} MiB/s")
        static = results["nginx static"][1]
        accel = results["nginx + X-Accel-Redirect"][1]
        print(f"  X-Accel-Redirect / static: {accel / static:.2f}")
    finally:
        nginx.stop()
        registry.stop()
        plain.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
