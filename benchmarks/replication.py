"""Replication against `skopeo sync`: the same images (100 of 4 layers, about 1 GiB in
all) copied from this registry to a fresh CNCF Distribution (Debian's docker-registry)
on the same machine, by a manual push rule and by skopeo; then the lag of an
event-triggered rule, from a push's acknowledgement to the copy being pullable at the
remote, for small images (where the transfer costs nothing) and for 10 MiB ones.

    .venv/bin/python benchmarks/replication.py [--images 100] [--layer-mib 2.5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.images import push_layers  # noqa: E402
from tests.peers.distribution import Distribution  # noqa: E402
from tests.peers.registry import RegistryProcess  # noqa: E402

PASSWORD = "benchmark admin"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def fresh_distribution(root: Path, name: str) -> Distribution:
    (root / name).mkdir()
    return Distribution(root / name).start()


def by_rule(ours: RegistryProcess, client: httpx.Client, target: Distribution, n: int) -> float:
    """Seconds for a manual push rule to copy every bench/ image to `target`."""
    remote = {"name": f"dist{n}", "url": target.url}
    client.post("/api/v1/remotes", json=remote).raise_for_status()
    rule = {
        "name": f"bench{n}",
        "direction": "push",
        "remote": f"dist{n}",
        "repositories": ["bench/**"],
    }
    client.post("/api/v1/replication/rules", json=rule).raise_for_status()
    started = time.perf_counter()
    run = client.post(f"/api/v1/replication/rules/bench{n}/run").json()["run"]
    while True:
        found = client.get(f"/api/v1/replication/runs/{run}").json()
        if found["state"] not in ("planning", "running"):
            break
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    assert found["state"] == "succeeded", found
    return seconds


def by_skopeo(ours: RegistryProcess, target: Distribution, repos: list[str], root: Path) -> float:
    config = {
        ours.host: {
            "tls-verify": False,
            "credentials": {"username": "admin", "password": PASSWORD},
            "images": {repo: ["v1"] for repo in repos},
        }
    }
    path = root / "sync.yaml"
    path.write_text(json.dumps(config))  # YAML is a superset of JSON
    destination = target.url.removeprefix("http://")
    started = time.perf_counter()
    command = ["skopeo", "sync", "--src", "yaml", "--dest", "docker", "--dest-tls-verify=false"]
    subprocess.run(
        [*command, str(path), destination],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def lag(client: httpx.Client, target: Distribution, label: str, layer_bytes: int) -> list[float]:
    """Seconds from each push's acknowledgement to the tag at the remote, by an event
    rule, one push at a time."""
    remote = {"name": f"lag-{label}", "url": target.url}
    client.post("/api/v1/remotes", json=remote).raise_for_status()
    rule = {
        "name": f"lag-{label}",
        "direction": "push",
        "remote": f"lag-{label}",
        "repositories": [f"lag{label}/**"],
        "trigger": "event",
    }
    client.post("/api/v1/replication/rules", json=rule).raise_for_status()
    found = []
    with httpx.Client(base_url=target.url) as remote_client:
        for n in range(10):
            layers = [os.urandom(layer_bytes) for _ in range(4)]
            push_layers(client, f"lag{label}/app{n}", "v1", layers)
            acknowledged = time.perf_counter()
            while True:
                r = remote_client.head(
                    f"/v2/lag{label}/app{n}/manifests/v1", headers={"Accept": OCI_MANIFEST}
                )
                if r.status_code == 200:
                    break
                time.sleep(0.01)
            found.append(time.perf_counter() - acknowledged)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--layer-mib", type=float, default=2.5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-replication-"))
    ours = RegistryProcess(
        root / "ours",
        {
            "REGISTRY_AUTH_ENABLED": "true",
            "REGISTRY_ADMIN_PASSWORD": PASSWORD,
            "REGISTRY_HTTP_WORKERS": "2",
            "REGISTRY_LOG_LEVEL": "warning",
            "REGISTRY_HTTP_ACCESS_LOG": "false",
        },
    ).start()
    targets: list[Distribution] = []
    try:
        client = httpx.Client(base_url=ours.url, auth=("admin", PASSWORD), timeout=120)
        layer = int(args.layer_mib * 2**20)
        repos = [f"bench/app{n}" for n in range(args.images)]
        total = sum(
            push_layers(client, repo, "v1", [os.urandom(layer) for _ in range(4)])[1]
            for repo in repos
        )
        print(
            f"{args.images} images of 4 layers of {args.layer_mib:g} MiB: "
            f"{total / 2**30:.2f} GiB, from this registry to Distribution 2.8, same machine"
        )
        targets.append(fresh_distribution(root, "for-rule"))
        rule = by_rule(ours, client, targets[-1], 0)
        targets.append(fresh_distribution(root, "for-skopeo"))
        skopeo = by_skopeo(ours, targets[-1], repos, root)
        for label, seconds in (("push rule (manual run)", rule), ("skopeo sync", skopeo)):
            rate = total / 2**20 / seconds
            print(f"  {label:24} {seconds:7.1f} s  {rate:7.1f} MiB/s")
        print(f"  ratio (skopeo's time / ours): {skopeo / rule:.2f}")
        targets.append(fresh_distribution(root, "for-lag"))
        for label, size in (("small", 1024), ("large", int(2.5 * 2**20))):
            seconds = lag(client, targets[-1], label, size)
            print(
                f"  event rule, push to pullable, {label} images (4 x {size / 2**10:g} KiB): "
                f"median {statistics.median(seconds) * 1000:.0f} ms, "
                f"max {max(seconds) * 1000:.0f} ms over {len(seconds)}"
            )
        client.close()
    finally:
        ours.stop()
        for target in targets:
            target.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
