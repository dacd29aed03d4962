"""Resident memory of a server while a benchmark runs, read from /proc."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import TracebackType


def rss_kib(pid: int) -> int:
    """Resident memory of a process and its children (uvicorn's workers), in KiB."""
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass  # a worker that just exited
    return total


class PeakRss:
    """`with PeakRss(pid) as rss:` samples every 20 ms; then `rss.idle` and `rss.peak`
    (KiB) and `rss.growth_mib`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.idle = self.peak = rss_kib(pid)
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample)

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(0.02)

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.idle) / 1024

    def __enter__(self) -> PeakRss:
        self._sampler.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._done.set()
        self._sampler.join()
