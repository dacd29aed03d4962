"""Property-based, from the OpenAPI document: schemathesis draws requests for every
/api/v1/ operation (paths, queries and bodies, valid and not) and sends them to a real
`registry serve` with authentication on, as an admin; none may get a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import settings
from schemathesis.checks import not_a_server_error

from tests.openapi_check import DOCUMENT
from tests.peers.registry import RegistryProcess

SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)
PASSWORD = "fuzzing-admin-password"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The server's URL, and an admin's token for it."""
    root: Path = tmp_path_factory.mktemp("openapi-fuzz")
    process = RegistryProcess(root / "data", {"REGISTRY_AUTH_ENABLED": "true"}).start()
    try:
        process.cli("user", "add", "root", "--admin", "--password-stdin", stdin=PASSWORD + "\n")
        process.cli("namespace", "add", "team", "--owner", "root")
        r = httpx.get(
            f"{process.url}/token", params={"service": "registry"}, auth=("root", PASSWORD)
        )
        assert r.status_code == 200, r.text
        token = r.json()["token"]
        me = httpx.get(f"{process.url}/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["admin"] is True, me.text
        yield process.url, token
    finally:
        process.stop()


@SCHEMA.parametrize()
@settings(max_examples=40)
def test_no_request_makes_a_5xx(case: schemathesis.Case, server: tuple[str, str]) -> None:
    url, token = server
    # The admin stays: an example that removes or disables them would lock the rest out.
    if case.path_parameters and case.path_parameters.get("user") == "root":
        case.path_parameters["user"] = "someone"
    case.call_and_validate(
        base_url=url,
        headers={"Authorization": f"Bearer {token}"},
        checks=[not_a_server_error],
        timeout=30,
    )
