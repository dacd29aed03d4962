"""`registry serve` starts one worker per CPU core it may run on unless told otherwise,
as a container's cpuset or `taskset` limits it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.test_faults import wait_healthy, workers_of
from tests.peers.registry import RegistryProcess

pytestmark = pytest.mark.e2e


def test_one_worker_per_usable_core(tmp_path: Path) -> None:
    cores = os.sched_getaffinity(0)
    for allowed in ({min(cores)}, cores):
        # The server inherits this thread's affinity, as a process in a cpuset would.
        os.sched_setaffinity(0, allowed)
        try:
            server = RegistryProcess(tmp_path / str(len(allowed)), {"REGISTRY_HTTP_WORKERS": "0"})
            server.start()
        finally:
            os.sched_setaffinity(0, cores)
        try:
            wait_healthy(server)
            assert server.process is not None
            # One core: uvicorn serves in the process itself, with no workers spawned.
            spawned = workers_of(server.process.pid)
            assert len(spawned) == (len(allowed) if len(allowed) > 1 else 0)
            assert server.get("/v2/").status_code == 200
        finally:
            server.stop()
