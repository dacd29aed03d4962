"""/metrics of `registry serve` with two workers: a scrape after a known sequence of
requests counts every one of them, whichever worker served it (multiprocess mode), and
no label holds a repository name, tag or digest."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import httpx

from registry.api.routes import ROUTES
from registry.metrics import PUBLISH_SECONDS
from tests.e2e.test_faults import wait_healthy
from tests.helpers import scraped
from tests.peers.registry import RegistryProcess

MANIFEST_ROUTE = "/v2/{name:path}/manifests/{reference}"


def test_a_scrape_counts_the_requests_of_both_workers(tmp_path: Path) -> None:
    folder = tmp_path / "prometheus"
    server = RegistryProcess(
        tmp_path / "data",
        {
            "REGISTRY_HTTP_WORKERS": "2",
            "REGISTRY_METRICS_ACCESS": "open",
            "PROMETHEUS_MULTIPROC_DIR": str(folder),
        },
    ).start()
    try:
        wait_healthy(server)
        before = scraped(server.get("/metrics").text)
        missing = 60
        for i in range(missing):  # a connection each: both workers take some
            assert server.get(f"/v2/team/app{i}/manifests/v{i}").status_code == 404
        data = os.urandom(4096)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        r = httpx.post(
            f"{server.url}/v2/team/app/blobs/uploads/", params={"digest": digest}, content=data
        )
        assert r.status_code == 201
        # The worker that does not take the scrape has published its counts within
        # a second (registry/metrics.py keeps them in memory until then).
        time.sleep(PUBLISH_SECONDS + 0.5)
        after = scraped(server.get("/metrics").text)
    finally:
        server.stop()

    def grew(name: str) -> float:
        return after.get(name, 0) - before.get(name, 0)

    key = f'code="404",method="GET",route="{MANIFEST_ROUTE}"'
    assert grew(f"registry_http_requests_total{{{key}}}") == missing
    assert (
        grew(
            f'registry_http_request_duration_seconds_count{{method="GET",route="{MANIFEST_ROUTE}"}}'
        )
        == missing
    )
    assert grew('registry_db_query_duration_seconds_count{statement="manifest_by_tag"}') == missing
    upload = 'code="201",method="POST",route="/v2/{name:path}/blobs/uploads/"'
    assert grew(f"registry_http_requests_total{{{upload}}}") == 1
    assert grew('registry_http_request_bytes_total{route="/v2/{name:path}/blobs/uploads/"}') == len(
        data
    )
    assert grew('registry_storage_uploaded_bytes_total{driver="filesystem"}') == len(data)
    assert (
        grew(
            'registry_storage_operation_duration_seconds_count{driver="filesystem",operation="write_blob"}'
        )
        == 1
    )
    assert after["registry_http_in_flight_requests"] == 1  # the scrape itself
    # Both workers wrote values: one file each.
    pids = {path.stem.rsplit("_", 1)[1] for path in folder.glob("counter_*.db")}
    assert len(pids) == 2, pids
    # Routes are templates: no name, tag or digest is a label value.
    templates = {route.path for route in ROUTES} | {"unmatched"}
    for name in after:
        if 'route="' in name:
            route = name.split('route="', 1)[1].split('"', 1)[0]
            assert route in templates, name
        assert "team/app" not in name and "sha256:" not in name, name
