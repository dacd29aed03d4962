"""The closing PUT of a chunked upload whose chunks alternate between two processes.

Two `registry serve` processes share one SQLite database and data folder, like two
replicas. Each upload is POSTed to the first, its 64 MiB PATCHes (sent by curl from a
file) go to each in turn, and the PUT with the digest goes to the first: the PUT's time
is what the client waits for once it has sent its last byte. Run at --before (a git
worktree of that commit, on PYTHONPATH) and at the working tree, for each --gib size.

    .venv/bin/python benchmarks/chunked_put.py --gib 1 10 --before 1363dab
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.compare import curl  # noqa: E402
from benchmarks.lifecycle import worktree  # noqa: E402
from tests.peers.registry import RegistryProcess  # noqa: E402

MIB = 1024 * 1024
CHUNK = 64 * MIB


def closing_put(servers: list[RegistryProcess], chunk_file: Path, gib: int) -> tuple[float, float]:
    """Seconds of the closing PUT, and MiB/s of the PATCHes, for a `gib` GiB upload."""
    chunks = gib * 1024 * MIB // CHUNK
    piece = chunk_file.read_bytes()
    hasher = hashlib.sha256()
    for _ in range(chunks):
        hasher.update(piece)
    digest = f"sha256:{hasher.hexdigest()}"
    path, _ = curl("POST", f"{servers[0].url}/v2/bench/chunked/blobs/uploads/")
    path = path.split("/v2/", 1)[1]
    begun = time.perf_counter()
    for number in range(chunks):
        server = servers[number % 2]
        offset = number * CHUNK
        range_header = f"Content-Range: {offset}-{offset + CHUNK - 1}"
        located, _ = curl(
            "PATCH", f"{server.url}/v2/{path}", "-H", range_header, "-T", str(chunk_file)
        )
        path = located.split("/v2/", 1)[1]
    sent = time.perf_counter() - begun
    _, seconds = curl("PUT", f"{servers[0].url}/v2/{path}?digest={digest}")
    return seconds, chunks * CHUNK / MIB / sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="1363dab", help="the commit to compare with")
    parser.add_argument("--gib", type=int, nargs="+", default=[1, 10])
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-chunked-put-"))
    tree = worktree(root, args.before)
    chunk_file = root / "chunk"
    chunk_file.write_bytes(os.urandom(CHUNK))
    rows = []
    try:
        for label, env in (("before", {"PYTHONPATH": str(tree)}), ("now", {})):
            for gib in args.gib:
                data = root / f"{label}-{gib}" / "data"
                data.parent.mkdir()
                servers = [RegistryProcess(data, env).start() for _ in range(2)]
                try:
                    seconds, rate = closing_put(servers, chunk_file, gib)
                finally:
                    for server in servers:
                        server.stop()
                shutil.rmtree(data.parent, ignore_errors=True)
                rows.append((label, gib, seconds, rate))
                print(f"{label} {gib} GiB: PUT {seconds:.3f} s, PATCHes {rate:,.0f} MiB/s")
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)])
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"\n{time.strftime('%Y-%m-%d')}, {platform.node()}: {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; before = {args.before}\n"
    )
    print("| code | upload | closing PUT | PATCHes |\n|---|---|---|---|")
    for label, gib, seconds, rate in rows:
        print(f"| {label} | {gib} GiB | {seconds * 1000:,.0f} ms | {rate:,.0f} MiB/s |")


if __name__ == "__main__":
    main()
