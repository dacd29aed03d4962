"""The /v2/ route table lists the pulls first (api/routes.py): that is safe only while no
path matches two patterns, whatever a repository is named."""

from __future__ import annotations

import pytest
from starlette.routing import Match

from registry.api.routes import ROUTES

DIGEST = "sha256:" + "0" * 64
PATHS = [
    f"/v2/{name}/{rest}"
    for name in ("a", "a/b", "blobs", "x/blobs/uploads", "manifests/tags", "_catalog/x")
    for rest in (
        "manifests/v1",
        f"manifests/{DIGEST}",
        f"blobs/{DIGEST}",
        "blobs/uploads/",
        "blobs/uploads/1f2e",
        "tags/list",
        f"referrers/{DIGEST}",
    )
]


@pytest.mark.parametrize("path", [*PATHS, "/v2/", "/v2/_catalog"])
def test_a_path_matches_one_pattern(path: str) -> None:
    patterns = {
        route.path
        for route in ROUTES
        for method in ("GET", "PUT", "POST", "PATCH", "DELETE")
        if route.matches({"type": "http", "path": path, "method": method, "root_path": ""})[0]
        == Match.FULL
    }
    assert len(patterns) == 1, (path, patterns)
