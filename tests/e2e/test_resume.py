"""A chunked upload survives a restart of the server process."""

from __future__ import annotations

import hashlib
import os

import httpx

from tests.e2e.conftest import RegistryProcess


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
