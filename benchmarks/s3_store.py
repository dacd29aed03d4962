"""Upload and download throughput on the S3 store (moto's server) next to the filesystem
store, server memory during the upload, and manifest GETs while a large S3 upload runs.

    .venv/bin/python benchmarks/s3_store.py [--mib 1024]

    # A layer over S3's 5 GiB copy limit needs a real S3 or MinIO: moto keeps objects in
    # memory and is OOM-killed completing a 6 GiB multipart upload on a 24 GiB machine.
    AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=… .venv/bin/python benchmarks/s3_store.py \
        --mib 6144 --endpoint http://minio:9000 --bucket bench

Each store gets its own `registry serve` (one worker, auth off) on a free port. A blob of
--mib MiB goes up in one streamed PATCH and a PUT, then comes down by GET: streamed
through the registry, and for S3 also by following the 307 to a presigned URL. moto runs
with S3's real limits (5 MiB parts); the S3 store uses its default 16 MiB segments.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import httpx

BIN = Path(sys.executable).parent
BLOCK = os.urandom(1024 * 1024)
MANIFEST = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(url: str, process: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if process.poll() is not None:
            raise SystemExit(f"{process.args} exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"nothing answers at {url}")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@contextmanager
def given(endpoint: str) -> Iterator[str]:
    yield endpoint


@contextmanager
def moto() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait(url, process)
        boto3.client(
            "s3",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        ).create_bucket(Bucket="bench")
        yield url
    finally:
        process.terminate()
        process.wait()


@contextmanager
def registry(env: dict[str, str], data: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "registry"), "serve"],
        env={
            **os.environ,
            "REGISTRY_DATA_DIR": data,
            "REGISTRY_HTTP_HOST": "127.0.0.1",
            "REGISTRY_HTTP_PORT": str(port),
            "REGISTRY_LOG_LEVEL": "warning",
            "REGISTRY_AUTH_ENABLED": "false",
            **env,
        },
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait(url + "/v2/", process)
        yield url, process
    finally:
        process.terminate()
        process.wait()


def blob_digest(total: int) -> str:
    hasher = hashlib.sha256()
    for piece in pieces(total):
        hasher.update(piece)
    return "sha256:" + hasher.hexdigest()


def pieces(total: int) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        piece = BLOCK[: min(len(BLOCK), total - sent)]
        sent += len(piece)
        yield piece


def upload(url: str, pid: int, total: int, digest: str) -> tuple[float, float]:
    """Seconds taken and peak server RSS growth (MiB) for one streamed upload."""
    idle = peak = rss_kib(pid)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_kib(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.monotonic()
    with httpx.Client(base_url=url, timeout=3600) as client:
        location = client.post("/v2/bench/big/blobs/uploads/").headers["Location"]
        r = client.patch(location, content=pieces(total))
        r.raise_for_status()
        r = client.put(r.headers["Location"], params={"digest": digest})
        r.raise_for_status()
    elapsed = time.monotonic() - start
    done.set()
    sampler.join()
    return elapsed, (peak - idle) / 1024


def upload_monolithic(url: str, total: int, digest: str) -> float:
    """Seconds for one POST carrying the whole blob and its digest."""
    start = time.monotonic()
    with httpx.Client(base_url=url, timeout=3600) as client:
        r = client.post(
            "/v2/bench/mono/blobs/uploads/", params={"digest": digest}, content=pieces(total)
        )
        r.raise_for_status()
    return time.monotonic() - start


def download(url: str, digest: str, follow: bool) -> float:
    hasher = hashlib.sha256()
    start = time.monotonic()
    with (
        httpx.Client(timeout=3600, follow_redirects=follow) as client,
        client.stream("GET", f"{url}/v2/bench/big/blobs/{digest}") as r,
    ):
        r.raise_for_status()
        for piece in r.iter_bytes(1024 * 1024):
            hasher.update(piece)
    elapsed = time.monotonic() - start
    assert "sha256:" + hasher.hexdigest() == digest, "downloaded bytes do not match"
    return elapsed


def push_manifest(url: str) -> None:
    with httpx.Client(base_url=url) as client:
        config = b"{}"
        digest = "sha256:" + hashlib.sha256(config).hexdigest()
        client.post("/v2/bench/small/blobs/uploads/", params={"digest": digest}, content=config)
        body = (
            MANIFEST
            + (
                f'"config":{{"mediaType":"application/vnd.oci.image.config.v1+json",'
                f'"digest":"{digest}","size":2}},"layers":[]}}'
            ).encode()
        )
        r = client.put(
            "/v2/bench/small/manifests/v1",
            content=body,
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        )
        r.raise_for_status()


def manifest_latencies(url: str, until: threading.Event, seconds: float = 0) -> list[float]:
    """Sequential manifest GETs until `until` is set (or for `seconds`); latencies in ms."""
    latencies = []
    deadline = time.monotonic() + seconds
    headers = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    with httpx.Client(base_url=url) as client:
        while not until.is_set() and (not seconds or time.monotonic() < deadline):
            start = time.perf_counter()
            client.get("/v2/bench/small/manifests/v1", headers=headers).raise_for_status()
            latencies.append((time.perf_counter() - start) * 1000)
    return latencies


def probe_into(results: list[float], url: str, until: threading.Event) -> None:
    results.extend(manifest_latencies(url, until))


def summary(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p99 = ordered[int(len(ordered) * 0.99) - 1] if len(ordered) >= 100 else ordered[-1]
    return f"median {statistics.median(ordered):.1f} ms, p99 {p99:.1f} ms, n={len(ordered)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=1024, help="blob size in MiB")
    parser.add_argument("--endpoint", help="an S3 endpoint to use instead of starting moto")
    parser.add_argument("--bucket", default="bench", help="with --endpoint: an existing bucket")
    args = parser.parse_args()
    total = args.mib * 1024 * 1024
    digest = blob_digest(total)
    mib = total / 1024**2
    rows = []
    with given(args.endpoint) if args.endpoint else moto() as endpoint:
        s3 = {
            "REGISTRY_STORAGE_DRIVER": "s3",
            "REGISTRY_STORAGE_S3_BUCKET": args.bucket,
            "REGISTRY_STORAGE_S3_ENDPOINT_URL": endpoint,
            "REGISTRY_STORAGE_S3_ADDRESSING_STYLE": "path",
        }
        if not args.endpoint:
            s3["REGISTRY_STORAGE_S3_ACCESS_KEY"] = s3["REGISTRY_STORAGE_S3_SECRET_KEY"] = "bench"
        label = "s3" if args.endpoint else "s3 (moto)"
        for name, env in (("filesystem", {}), (label, s3)):
            data = tempfile.mkdtemp(prefix="registry-bench-")
            streaming = {**env, "REGISTRY_STORAGE_S3_REDIRECT": "false"}
            with registry(streaming, data) as (url, process):
                push_manifest(url)
                idle = manifest_latencies(url, threading.Event(), seconds=3)
                during: list[float] = []
                stop = threading.Event()
                probe = threading.Thread(target=probe_into, args=(during, url, stop))
                probe.start()
                up, growth = upload(url, process.pid, total, digest)
                stop.set()
                probe.join()
                streamed = download(url, digest, follow=False)
                mono = upload_monolithic(url, total, digest)
            redirected = None
            if env:
                # The same data folder and bucket, now answering blob GETs with a 307.
                with registry(env, data) as (url, _):
                    redirected = download(url, digest, follow=True)
            subprocess.run(["rm", "-rf", data], check=False)
            rows.append((name, up, mono, growth, streamed, redirected, idle, during))

    print(f"\n{mib:.0f} MiB blob. Chunked: one streamed PATCH, then PUT (RSS growth is for")
    print("this one). Monolithic: one POST with the digest. GET: streamed, or via the 307.")
    print(f"{'store':<12} {'chunked':>12} {'monolithic':>12} {'RSS growth':>11}", end="")
    print(f" {'GET through':>12} {'GET via 307':>12}")
    for name, up, mono, growth, streamed, redirected, _, _ in rows:
        via = f"{mib / redirected:.0f} MiB/s" if redirected else "-"
        print(
            f"{name:<12} {mib / up:>6.0f} MiB/s {mib / mono:>6.0f} MiB/s {growth:>7.1f} MiB "
            f"{mib / streamed:>6.0f} MiB/s {via:>12}"
        )
    print("\nmanifest GET by tag, sequential, one client:")
    for name, *_, idle, during in rows:
        print(f"  {name:<12} idle:   {summary(idle)}")
        print(f"  {name:<12} during the upload: {summary(during)}")


if __name__ == "__main__":
    main()
