"""What events, metrics and access logs cost the hot paths, measured side by side.

    .venv/bin/python benchmarks/observability.py [--before f90eff0] [--repeats 3] [--seconds 5]

`registry serve` at --before (a commit without events, webhooks, metrics or access lines
of its own: uvicorn's access log instead) and at the working tree with all of them on:
an access line per request (log_level info, both); a webhook for every manifest pushed
(`--events`: add blob and pull for every blob pushed and every manifest GET) delivered to
a receiver (nginx answering 204, the least a receiver on this machine can take from it;
or `--receiver python`, the tests' own, in a process); and Prometheus scraping /metrics
every second. Two workers each (metrics in multiprocess mode), SQLite and the
filesystem. The workloads alternate between the two servers, as in lifecycle.py.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.lifecycle import (  # noqa: E402
    Background,
    Server,
    alternate,
    prepare,
    start,
    table,
    worktree,
)
from tests.helpers import scraped  # noqa: E402
from tests.peers.nginx import NginxProcess  # noqa: E402

WORKLOADS = ("manifest GET", "blob HEAD", "small blobs", "tags pushed")


class Sink(NginxProcess):
    """nginx answering 204 to every request, logging none."""

    def start(self) -> Sink:
        self._write_conf(
            f"  server {{ listen 127.0.0.1:{self.port}; access_log off; "
            "location / { return 204; } }"
        )
        super().start()
        return self


class Scraper(Background):
    """GET /metrics every second, as Prometheus would."""

    scrapes = 0

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stopping.wait(1.0):
                assert client.get(f"{self.base}/metrics").status_code == 200
                self.scrapes += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="f90eff0", help="a commit before issue 16")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--only", metavar="TEXT", help="only workloads whose label has TEXT")
    parser.add_argument(
        "--events",
        default="push",
        help="what the webhook wants, comma-separated (push: manifests; blob: every blob "
        "pushed; pull: every manifest GET), or none",
    )
    parser.add_argument(
        "--receiver",
        choices=("nginx", "python"),
        default="nginx",
        help="nginx answering 204 (as cheap as a receiver on this machine can be), or the "
        "tests' Python receiver in a process of its own",
    )
    args = parser.parse_args()
    if missing := [tool for tool in ("wrk", "ab") if not shutil.which(tool)]:
        sys.exit(f"benchmarks need {', '.join(missing)}: see `make bench`")
    root = Path(tempfile.mkdtemp(prefix="bench-observability-"))
    # The receiver in a process of its own, as it would be on another host.
    receiver: Sink | subprocess.Popen[str]
    if args.receiver == "nginx":
        receiver = Sink(root / "sink").start()
        receiver_url = receiver.url + "/hook"
    else:
        receiver = subprocess.Popen(
            [sys.executable, "-m", "tests.peers.receiver"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert receiver.stdout is not None
        receiver_url = receiver.stdout.readline().strip()
    servers: list[Server] = []
    tree = None
    common = {"REGISTRY_HTTP_WORKERS": "2", "REGISTRY_LOG_LEVEL": "info"}
    try:
        tree = worktree(root, args.before)
        before = start("all off", root, {**common, "PYTHONPATH": str(tree)})
        after = start(
            "all on",
            root,
            {**common, "REGISTRY_METRICS_ACCESS": "open", "REGISTRY_WEBHOOKS_POLL_SECONDS": "0.5"},
        )
        servers += [before, after]
        if args.events != "none":
            hook = {"url": receiver_url, "events": args.events.split(",")}
            assert httpx.post(f"{after.url}/api/v1/webhooks", json=hook).status_code == 201
        for server in servers:
            prepare(server)
        scrapers: list[Scraper] = []

        def scraping(server: Server) -> AbstractContextManager[object]:
            if server is not after:
                return nullcontext()
            scrapers.append(Scraper(server.url))
            return scrapers[-1]

        rows = []
        for only in [args.only] if args.only else WORKLOADS:
            rows += alternate(
                (before, after), args.repeats, args.seconds, around=scraping, only=only
            )
        time.sleep(2)  # the last deliveries
        delivered = int(
            scraped(httpx.get(f"{after.url}/metrics").text)[
                'registry_webhook_attempts_total{outcome="delivered"}'
            ]
        )
        scrapes = sum(s.scrapes for s in scrapers)
    finally:
        for server in servers:
            server.process.stop()
        if isinstance(receiver, Sink):
            receiver.stop()
        else:
            receiver.kill()
        if tree is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)])
        shutil.rmtree(root, ignore_errors=True)
    head = (
        f"{time.strftime('%Y-%m-%d')}, {platform.node()}: {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, median of {args.repeats} x {args.seconds} s"
    )
    print(head + "\n")
    print(
        table(f"At {args.before} (all off) and the working tree (all on):", (before, after), rows)
    )
    print(f"\nAll on: {delivered:,} webhook deliveries received, {scrapes:,} scrapes of /metrics.")


if __name__ == "__main__":
    main()
