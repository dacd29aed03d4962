"""/api/v1/openapi.json: a valid OpenAPI 3.1 document of every /api/v1/ route, made from
the declarations the handlers use. (Every answer of the test-suite is checked against
it: tests/openapi_check.py; schemathesis fuzzes it: tests/e2e/test_openapi_fuzz.py.)"""

from __future__ import annotations

import httpx
import pytest
from openapi_spec_validator import validate
from starlette.applications import Starlette
from starlette.routing import Route

from registry.api.routes import ADMIN_API
from tests.openapi_check import operation_for

pytestmark = pytest.mark.anyio


async def test_the_document_is_valid_openapi_3_1(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    document = r.json()
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert document == ADMIN_API.document()
    errors = document["paths"]["/api/v1/users"]["post"]["responses"]["409"]
    assert errors["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Errors"
    }


async def test_every_api_route_is_in_the_document(app: Starlette) -> None:
    served = {
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route) and route.path.startswith("/api/v1/")
        for method in route.methods or ()
        if method != "HEAD" and route.path != "/api/v1/openapi.json"
    }
    assert served
    declared = {(op.method, op.path) for op in ADMIN_API.operations}
    assert served == declared


def test_repository_names_with_slashes_find_their_operation() -> None:
    found = operation_for("DELETE", "/api/v1/repositories/team/app/api")
    assert found is not None and found[0] == "/api/v1/repositories/{name}"
    assert operation_for("GET", "/api/v1/repositories/team/app") is None


async def test_a_body_that_does_not_fit_names_the_field(client: httpx.AsyncClient) -> None:
    r = await client.patch("/api/v1/namespaces/team/policy", json={"quota_bytes": "lots"})
    assert r.status_code == 400
    [error] = r.json()["errors"]
    assert error["code"] == "INVALID"
    assert error["detail"] == {"field": "quota_bytes"}
    r = await client.patch("/api/v1/namespaces/team/policy", json={"quota": 5})
    assert r.json()["errors"][0]["detail"] == {"field": "quota"}


async def test_me_on_an_open_registry(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/me")
    assert r.status_code == 200
    assert r.json() == {
        "name": "",
        "kind": "user",
        "admin": True,
        "authentication": False,
        "namespaces": None,
        "groups": [],
        "roles": [],
    }
