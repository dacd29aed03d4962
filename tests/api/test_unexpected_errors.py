"""An error no handler expected (a bug) is one 500 in the spec's format, with the
request ID and the API version header like every other answer, logged once with its
traceback and the request ID, and counted under its route."""

from __future__ import annotations

import logging

import httpx
import pytest
from starlette.applications import Starlette

from tests.helpers import assert_error

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
    pytest.mark.parametrize("storage_env", ["filesystem"], indirect=True),
]


async def test_a_bug_is_a_500_in_the_spec_format_with_the_headers_and_one_log(
    app: Starlette,
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug in the tag list")

    monkeypatch.setattr(app.state.registry.listing, "tags", broken)
    with caplog.at_level(logging.INFO):
        r = await client.get("/v2/team/app/tags/list", headers={"X-Request-ID": "ignored"})
    error = assert_error(r, 500, "UNKNOWN")
    assert "registry log" in error["message"] and "a bug" not in r.text  # no internals
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    request_id = r.headers["X-Request-ID"]
    failed = [rec for rec in caplog.records if rec.exc_info]
    assert len(failed) == 1, [rec.getMessage() for rec in failed]
    assert "GET /v2/team/app/tags/list failed unexpectedly" in failed[0].getMessage()
    assert "a bug in the tag list" in str(failed[0].exc_info[1])  # type: ignore[index]
    [access] = [rec for rec in caplog.records if rec.name == "registry.access"]
    assert access.args and 500 in access.args, access.args  # logged with its status
    assert request_id
