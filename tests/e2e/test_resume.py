"""A chunked upload survives a restart of the server process."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.e2e.conftest import RegistryProcess
from tests.e2e.test_faults import wait_healthy


def test_chunked_upload_continues_after_restart(registry_process: RegistryProcess) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    half = len(data) // 2
    with httpx.Client(base_url=registry_process.url, timeout=30) as client:
        location = client.post("/v2/team/resume/blobs/uploads/").headers["Location"]
        r = client.patch(location, content=data[:half], headers={"Content-Range": f"0-{half - 1}"})
        assert r.status_code == 202

    registry_process.restart()

    with httpx.Client(base_url=registry_process.url, timeout=30) as client:
        status = client.get(location)
        assert status.status_code == 204
        assert status.headers["Range"] == f"0-{half - 1}"
        r = client.patch(
            location, content=data[half:], headers={"Content-Range": f"{half}-{len(data) - 1}"}
        )
        assert r.status_code == 202
        r = client.put(location, params={"digest": digest})
        assert r.status_code == 201, r.text
        blob = client.get(f"/v2/team/resume/blobs/{digest}", follow_redirects=True)
        assert blob.content == data


class SlowBody:
    """A chunk's body that sends its first part, then waits to be let go (or cut)."""

    def __init__(self, first: bytes, rest: bytes) -> None:
        self.first, self.rest = first, rest
        self.sent, self.go = threading.Event(), threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        yield self.first
        self.sent.set()
        self.go.wait(60)
        yield self.rest


def stream_in_background(
    url: str, body: SlowBody, answers: list[httpx.Response]
) -> threading.Thread:
    """PATCH `body` to `url` in a thread; its answer, if any, lands in `answers`."""

    def send() -> None:
        with contextlib.suppress(httpx.HTTPError):  # the server dies
            answers.append(httpx.patch(url, content=body, timeout=60))

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    assert body.sent.wait(30)
    return thread


def stored(client: httpx.Client, location: str) -> int:
    """The bytes the session has, as its status says ("0-0" is none here: no test
    stores exactly one byte)."""
    status = client.get(location)
    assert status.status_code == 204, status.text
    last = int(status.headers["Range"].split("-")[1])
    return last + 1 if last else 0


def test_an_upload_cut_by_kill_9_resumes_at_once_after_the_restart(tmp_path: Path) -> None:
    """The process holding the session's claim dies mid-chunk: the restarted one sees on
    this host that the holder is gone and takes the claim at once (it waited 120 s)."""
    server = RegistryProcess(tmp_path / "data").start()
    data = os.urandom(2 * 1024 * 1024)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            location = client.post("/v2/team/cut/blobs/uploads/").headers["Location"]
            body = SlowBody(data[: 1024 * 1024], b"x")
            stream_in_background(server.url + location, body, [])
            deadline = time.monotonic() + 30
            while stored(client, location) == 0:  # the first part reached the store
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert server.process is not None
            server.process.kill()
            server.process.wait()
            body.go.set()
            server.start()
            wait_healthy(server)
            resumed = time.monotonic()
            offset = stored(client, location)
            r = client.patch(
                location,
                content=data[offset:],
                headers={"Content-Range": f"{offset}-{len(data) - 1}"},
            )
            assert r.status_code == 202, r.text
            assert time.monotonic() - resumed < 1.0
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            assert client.put(location, params={"digest": digest}).status_code == 201
            assert client.get(f"/v2/team/cut/blobs/{digest}").content == data
    finally:
        server.stop()


def test_a_hung_replica_loses_its_claim_within_seconds_and_stops_when_it_wakes(
    tmp_path: Path,
) -> None:
    """Two replicas on one index and store; the one holding a session's claim stops
    (SIGSTOP: alive on this host, silent as a replica on a lost host). The other answers
    416 with Retry-After while the claim is fresh, and takes it once the holder has
    missed its heartbeats (8 s); the holder, woken, ends its chunk with an error."""
    data = tmp_path / "data"
    first = RegistryProcess(data).start()
    second = RegistryProcess(data).start()
    payload = os.urandom(512 * 1024)
    try:
        with httpx.Client(base_url=second.url, timeout=30) as client:
            location = client.post("/v2/team/hung/blobs/uploads/").headers["Location"]
            body = SlowBody(payload[:1000], payload[1000:])
            answers: list[httpx.Response] = []
            holder = stream_in_background(first.url + location, body, answers)
            time.sleep(3)  # longer than a beat: the live holder keeps the claim
            busy = client.patch(location, content=payload)
            assert busy.status_code == 416, busy.text
            assert busy.headers.get("Retry-After") == "1", (busy.headers, busy.text)
            assert first.process is not None
            os.kill(first.process.pid, signal.SIGSTOP)
            stopped = time.monotonic()
            try:
                while True:
                    offset = stored(client, location)
                    r = client.patch(
                        location,
                        content=payload[offset:],
                        headers={"Content-Range": f"{offset}-{len(payload) - 1}"},
                    )
                    if r.status_code == 202:
                        break
                    assert r.status_code == 416 and r.headers["Retry-After"] == "1", r.text
                    assert time.monotonic() - stopped < 15, "the claim was not taken over"
                    time.sleep(float(r.headers["Retry-After"]))
                assert time.monotonic() - stopped >= 5  # not before the claim went stale
            finally:
                os.kill(first.process.pid, signal.SIGCONT)
            time.sleep(3)  # its next beat finds the claim gone
            body.go.set()
            holder.join(30)
            [answer] = answers
            assert answer.status_code == 400
            assert "was taken over by another request" in answer.text
            digest = "sha256:" + hashlib.sha256(payload).hexdigest()
            assert client.put(location, params={"digest": digest}).status_code == 201
            assert client.get(f"/v2/team/hung/blobs/{digest}").content == payload
    finally:
        first.stop()
        second.stop()
