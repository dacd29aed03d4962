"""`registry serve` starts one worker per CPU core it may run on unless told otherwise,
as a container's cpuset or `taskset` limits it; on a machine busy with other work, its
workers start slowly, and are not killed for it."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.e2e.test_faults import wait_healthy, workers_of
from tests.peers.registry import RegistryProcess, connections_by_worker
from tests.peers.tools import stop

# Long enough for uvicorn's own ping bound (5 s) to have killed a worker still starting.
BUSY_SECONDS = 8


@contextmanager
def busy_machine(spinners: int) -> Iterator[None]:
    """Processes spinning on the CPU for BUSY_SECONDS, or until the block ends."""
    spinning = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(spinners)
    ]

    def end() -> None:
        for process in spinning:
            stop(process)

    timer = threading.Timer(BUSY_SECONDS, end)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        end()


def test_one_worker_per_usable_core(tmp_path: Path) -> None:
    cores = os.sched_getaffinity(0)
    for allowed in ({min(cores)}, cores):
        # The server inherits this thread's affinity, as a process in a cpuset would.
        os.sched_setaffinity(0, allowed)
        try:
            server = RegistryProcess(tmp_path / str(len(allowed)), {"REGISTRY_HTTP_WORKERS": "0"})
            server.start()  # listening: its workers are starting
            # Processes spinning on each core while the workers start, as other tests do
            # under the parallel suite, where a worker's imports took over 5 s and
            # uvicorn's own ping bound killed it, and started it again (registry/cli/serve.py,
            # WORKER_HEALTHCHECK_SECONDS). One core has no workers.
            with busy_machine(2 * len(allowed) if len(allowed) > 1 else 0):
                wait_healthy(server, timeout=60)
        finally:
            os.sched_setaffinity(0, cores)
        try:
            assert server.process is not None
            # One core: uvicorn serves in the process itself, with no workers spawned.
            spawned = workers_of(server.process.pid)
            assert len(spawned) == (len(allowed) if len(allowed) > 1 else 0)
            assert server.get("/v2/").status_code == 200
            assert "died" not in server.log.read_text()
        finally:
            server.stop()


def test_workers_end_when_their_parent_is_killed(tmp_path: Path) -> None:
    """kill -9 of `registry serve` (or the OOM killer) takes its workers with it: orphans
    would keep the port, and the restarted registry could not listen."""
    server = RegistryProcess(tmp_path / "data", {"REGISTRY_HTTP_WORKERS": "2"}).start()
    try:
        assert server.process is not None
        workers = _two_workers(server)
        server.process.kill()
        server.process.wait()
        deadline = time.monotonic() + 10
        while alive := [pid for pid in workers if Path(f"/proc/{pid}").exists()]:
            assert time.monotonic() < deadline, f"workers {alive} outlived their parent"
            time.sleep(0.1)
        server.start()  # on the same port, free again
        wait_healthy(server)
    finally:
        server.stop()


def test_a_stop_with_workers_ends_soon_and_says_so(tmp_path: Path) -> None:
    """SIGTERM: the workers drain and end, the parent logs its last lines and exits 0,
    without the second or so its interpreter's teardown took (registry/cli/serve.py)."""
    server = RegistryProcess(tmp_path / "data", {"REGISTRY_HTTP_WORKERS": "2"}).start()
    assert server.process is not None
    wait_healthy(server)
    started = time.monotonic()
    server.process.terminate()
    assert server.process.wait(timeout=10) == 0
    took = time.monotonic() - started
    # uvicorn looks at signals twice a second; each worker then closes its pools.
    assert took < 2.5, took
    assert "Stopping parent process" in server.log.read_text()


def test_connections_that_come_one_at_a_time_spread_over_the_workers(tmp_path: Path) -> None:
    """Each worker listens on a socket of its own (registry/listeners.py): connections
    opened one after another, as a client's pool fills up, went 52-58 of 64 to one
    worker when they shared uvicorn's; the kernel now spreads them by a hash. A worker
    killed is replaced by one that listens too, and the port stays the registry's."""
    server = RegistryProcess(tmp_path / "data", {"REGISTRY_HTTP_WORKERS": "2"}).start()
    try:
        assert server.process is not None
        workers = _two_workers(server)
        # Below 16 of 64 by chance: about 1 in 30,000.
        assert min(_taken(server, workers, 64)) >= 16

        with socket.socket() as other, pytest.raises(OSError) as refused:
            other.bind(("127.0.0.1", server.port))
        assert refused.value.errno == errno.EADDRINUSE

        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while len(replaced := workers_of(server.process.pid)) < 2 or workers[0] in replaced:
            assert time.monotonic() < deadline, "the worker killed was not replaced"
            time.sleep(0.1)
        deadline = time.monotonic() + 60
        while not all(_listening(server, pid) for pid in replaced):
            assert time.monotonic() < deadline, "the new worker does not listen"
            time.sleep(0.1)
        assert all(count > 0 for count in _taken(server, replaced, 64))
    finally:
        server.stop()


def _two_workers(server: RegistryProcess) -> list[int]:
    assert server.process is not None
    wait_healthy(server)
    deadline = time.monotonic() + 30
    while len(workers := workers_of(server.process.pid)) < 2:
        assert time.monotonic() < deadline, "two workers did not start"
        time.sleep(0.1)
    return workers


def _listening(server: RegistryProcess, pid: int) -> bool:
    listed = subprocess.run(
        ["ss", "-tlnpH", f"( sport = :{server.port} )"], capture_output=True, text=True
    ).stdout
    return f"pid={pid}," in listed


def _taken(server: RegistryProcess, workers: list[int], count: int) -> list[int]:
    """Open `count` connections one at a time, each asking once; how many each worker
    holds."""
    opened = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            opened.append(sock)
            sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: registry\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            time.sleep(0.02)
        return connections_by_worker(server.port, workers)
    finally:
        for sock in opened:
            sock.close()
