"""Durable webhooks with `registry serve` as a real process: killed with SIGKILL after a
change committed and before its event went out, it delivers the event once restarted;
with two workers, each event is sent once."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_faults import wait_healthy, workers_of
from tests.peers.receiver import Receiver
from tests.peers.registry import RegistryProcess


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


def push(client: httpx.Client, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data)
    assert r.status_code == 201, r.text
    return digest


def wait_for(receiver: Receiver, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(receiver.accepted()) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1)  # a duplicate would come within a poll or two


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_event_committed_before_a_kill_9_is_delivered_after_the_restart(
    tmp_path: Path, receiver: Receiver, workers: str
) -> None:
    # The worker looks for events at start, then not for a minute: the kill comes first.
    server = RegistryProcess(
        tmp_path / "data",
        {"REGISTRY_WEBHOOKS_POLL_SECONDS": "60", "REGISTRY_HTTP_WORKERS": workers},
    ).start()
    try:
        wait_healthy(server)
        time.sleep(1)  # past the workers' first look
        with httpx.Client(base_url=server.url, timeout=30) as client:
            r = client.post("/api/v1/webhooks", json={"url": receiver.url, "events": ["blob"]})
            assert r.status_code == 201
            pushed = [push(client, "kill/app", os.urandom(100)) for _ in range(5)]
        assert server.process is not None
        for pid in [*workers_of(server.process.pid), server.process.pid]:
            os.kill(pid, signal.SIGKILL)
        server.process.wait()
        server.process = None
        assert receiver.received == []
        server.env["REGISTRY_WEBHOOKS_POLL_SECONDS"] = "0.2"
        server.start()
        wait_healthy(server)
        wait_for(receiver, len(pushed))
        events = [r.event for r in receiver.received]
        assert [e["target"]["digest"] for e in events] == pushed
        assert len({e["id"] for e in events}) == len(pushed)
    finally:
        server.stop()
