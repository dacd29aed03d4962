"""The README's webhook receiver, run as it is written: the registry's deliveries pass
its signature check and a forged one does not."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.e2e.test_faults import wait_healthy
from tests.peers.registry import RegistryProcess
from tests.peers.tools import free_port, wait_for_port

README = Path(__file__).resolve().parents[2] / "README.md"
SECRET = "a-secret-for-the-readme-receiver"


def receiver_source(port: int) -> str:
    text = README.read_text()
    start = text.index("A receiver that checks the signature")
    code = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert code is not None
    source = code[1]
    assert 'SECRET = b"the secret shown when the webhook was made"' in source
    source = source.replace("the secret shown when the webhook was made", SECRET)
    return source.replace('HTTPServer(("", 8080)', f'HTTPServer(("127.0.0.1", {port})')


def test_the_readme_receiver_checks_signatures(tmp_path: Path) -> None:
    port = free_port()
    receiver = subprocess.Popen(
        [sys.executable, "-u", "-c", receiver_source(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    server = RegistryProcess(tmp_path / "data", {"REGISTRY_WEBHOOKS_POLL_SECONDS": "0.2"})
    server.start()
    try:
        wait_for_port(port)
        wait_healthy(server)
        url = f"http://127.0.0.1:{port}/hook"
        hook = {"url": url, "events": ["blob"], "secret": SECRET}
        assert httpx.post(f"{server.url}/api/v1/webhooks", json=hook).status_code == 201
        data = b"for the readme"
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        r = httpx.post(
            f"{server.url}/v2/team/app/blobs/uploads/", params={"digest": digest}, content=data
        )
        assert r.status_code == 201
        forged = httpx.post(url, content=b'{"events": []}', headers={"X-Registry-Signature": "x"})
        assert forged.status_code == 401
        deadline = time.monotonic() + 20
        attempts: list[dict[str, object]] = []
        while time.monotonic() < deadline and not attempts:
            attempts = httpx.get(f"{server.url}/api/v1/webhooks/1/attempts").json()["attempts"]
            time.sleep(0.1)
        assert [a["status"] for a in attempts] == [204]
    finally:
        server.stop()
        receiver.terminate()
    out, _ = receiver.communicate(timeout=10)
    assert out.splitlines() == ["push team/app None"]
