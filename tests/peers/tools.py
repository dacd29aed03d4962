"""Finding tools and ports; skipping (or, with REGISTRY_TEST_STRICT=1, failing) without them."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

STRICT = os.environ.get("REGISTRY_TEST_STRICT") == "1"


def unavailable(reason: str) -> None:
    """Skip the test, or fail it in strict mode (CI installs every peer)."""
    if STRICT:
        pytest.fail(f"REGISTRY_TEST_STRICT=1 and {reason}")
    pytest.skip(reason)


def logged(count: Callable[..., int], *args: object, least: int = 1, timeout: float = 10) -> int:
    """`count(*args)` of access-log lines once it reaches `least`, or when `timeout` is up.
    A server writes a request's access line after its response has gone, so a client
    that reads the log straight after its answer can find the line not yet there."""
    deadline = time.monotonic() + timeout
    while (found := count(*args)) < least and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def until(check: Callable[[], Any], seconds: float = 60) -> Any:
    """What `check()` returns once it is true (polled every 0.1 s), or an AssertionError
    after `seconds`: for what another process does in the background."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"not so after {seconds} s")


@contextmanager
def ahead_of_other_work() -> Iterator[None]:
    """Run this block, and the processes it starts, ahead of the rest of the machine's
    work (nice -20, a weight 87 times the default; only root may): for a test that
    bounds a server's timings, which are the server's, not those of the other tests the
    parallel suite runs beside it."""
    if os.geteuid() != 0:
        yield
        return
    before = os.getpriority(os.PRIO_PROCESS, 0)
    os.setpriority(os.PRIO_PROCESS, 0, -20)
    try:
        yield
    finally:
        os.setpriority(os.PRIO_PROCESS, 0, before)


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        unavailable(f"{tool} is not installed (.ci/run installs it)")
    assert path is not None
    return path


def host_address() -> str:
    """This host's address on its default route (a UDP connect sends nothing): for a
    server that Docker must not treat as insecure, as it does 127.0.0.0/8. Not a Docker
    bridge's: on these machines traffic to 172.17.0.1 leaves through the sandbox's proxy."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))
        address: str = probe.getsockname()[0]
    if address.startswith("127."):
        unavailable("this host has no address off the loopback")
    return address


def run_tool(
    args: list[str], *, check: bool = True, timeout: float = 300, **options: Any
) -> subprocess.CompletedProcess[str]:
    """Run a client tool (docker, ctr, skopeo, compose) to its end, its output captured as
    text; with `check`, a failure is an AssertionError showing what it printed."""
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **options)
    if check and result.returncode != 0:
        command = " ".join([Path(args[0]).name, *args[1:]])
        raise AssertionError(f"{command} failed:\n{result.stdout}\n{result.stderr}")
    return result


def _worker_number() -> int:
    """This pytest-xdist worker's number (gw3 is 3); 0 outside xdist."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name[2:]) if name[2:].isdigit() else 0


# Each xdist worker hands out ports from a block of its own, below Linux's ephemeral range
# (32768-60999): a port the OS picked for bind(0) could be picked again for another
# worker, or for any outgoing connection's source port, before our server binds it;
# ports in a worker's own block can only be taken by that worker, which checks them.
_BLOCK = 400
_FIRST = 20000 + (_worker_number() % 30) * _BLOCK
_ports = itertools.cycle(range(_FIRST, _FIRST + _BLOCK))


def free_port() -> int:
    """A port on which nothing listens, from this worker's block; every address (a server
    may bind the host's own address, or Docker publish on all of them)."""
    for _ in range(_BLOCK):
        port = next(_ports)
        with socket.socket() as s:
            try:
                s.bind(("", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_FIRST}-{_FIRST + _BLOCK - 1}")


def wait_for_port(
    port: int, process: subprocess.Popen[bytes] | None = None, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"process exited with {process.returncode} before listening on {port}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


def launch(
    args: list[str], port: int, log: Path, what: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a server with its output appended to `log`; return once it listens on
    `port`, or raise with the end of its log."""
    with open(log, "ab") as out:
        process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process)
    except Exception as exc:
        stop(process)
        raise RuntimeError(f"{what} did not start:\n{tail(log)}") from exc
    return process


def stop(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
