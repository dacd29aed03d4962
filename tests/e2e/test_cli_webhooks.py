"""`registry webhook …` against a running server's database: added from the shell, the
server delivers to it; deliveries are listed and sent again; the changes are audited as
the operator's."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import httpx

from tests.e2e.test_faults import wait_healthy
from tests.peers.receiver import Receiver
from tests.peers.registry import RegistryProcess


def test_webhooks_from_the_command_line(tmp_path: Path) -> None:
    receiver = Receiver()
    server = RegistryProcess(tmp_path / "data", {"REGISTRY_WEBHOOKS_POLL_SECONDS": "0.2"})
    server.start()
    try:
        wait_healthy(server)
        added = server.cli("webhook", "add", receiver.url, "--events", "push", "--tags", "v*")
        assert "added webhook 1 for push" in added.stdout
        secret = added.stdout.split("secret (shown once; ")[1].split(": ", 1)[1].strip()
        listing = server.cli("webhook", "list").stdout
        assert f"1\t{receiver.url}\tpush\tall namespaces\tdistribution" in listing
        data = b'{"architecture":"amd64","os":"linux"}'
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        manifest = (
            '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
            '"config":{"mediaType":"application/vnd.oci.image.config.v1+json",'
            f'"digest":"{digest}","size":{len(data)}}},"layers":[]}}'
        )
        with httpx.Client(base_url=server.url) as client:
            r = client.post("/v2/cli/app/blobs/uploads/", params={"digest": digest}, content=data)
            assert r.status_code == 201
            for tag in ("latest", "v1"):
                r = client.put(
                    f"/v2/cli/app/manifests/{tag}",
                    content=manifest,
                    headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
                )
                assert r.status_code == 201
        deadline = time.monotonic() + 20
        while not receiver.accepted() and time.monotonic() < deadline:
            time.sleep(0.1)
        (got,) = receiver.accepted()  # only the v* tag
        assert got.signed_with(secret) and got.event["target"]["tag"] == "v1"
        deliveries = server.cli("webhook", "deliveries", "1").stdout.splitlines()
        assert len(deliveries) == 1 and "\tpush\tdelivered\t1\t200" in deliveries[0]
        delivery = deliveries[0].split("\t")[0]
        again = server.cli("webhook", "redeliver", "1", "--delivery", delivery).stdout
        assert "queued 1 deliveries again" in again
        deadline = time.monotonic() + 20
        while len(receiver.accepted()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [r.event["id"] for r in receiver.accepted()] == [got.event["id"]] * 2
        assert "removed webhook 1" in server.cli("webhook", "rm", "1").stdout
        failed = server.cli_result("webhook", "rm", "1")
        assert failed.returncode == 1 and "no webhook 1" in failed.stderr
        audit = server.get("/api/v1/audit", params={"action": "webhook."}).json()["events"]
        assert [e["action"] for e in audit] == ["webhook.delete", "webhook.create"]
        assert all(e["actor"]["name"].startswith("cli:") for e in audit)
        assert all(e["actor"]["kind"] == "system" for e in audit)
    finally:
        server.stop()
        receiver.close()
