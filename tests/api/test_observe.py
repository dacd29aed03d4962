"""Request IDs and access lines: an X-Request-ID is believed from a trusted proxy only,
made otherwise, returned, and put on every log line written for the request; one
access line per request, as text or JSON, with the route template (not the raw path)."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterator

import httpx
import pytest
from starlette.applications import Starlette

from registry import logs
from registry.context import Context, using
from registry.logs import JsonFormatter, TextFormatter
from tests.helpers import push_blob

pytestmark = pytest.mark.anyio


@pytest.fixture
def storage_env() -> dict[str, str]:
    return {}


def client_from(app: Starlette, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://registry.test")


async def test_request_ids_from_trusted_proxies_only(app: Starlette) -> None:
    async with client_from(app, "127.0.0.1") as proxy, client_from(app, "10.0.0.1") as other:
        r = await proxy.get("/v2/", headers={"X-Request-ID": "from-nginx-1"})
        assert r.headers["x-request-id"] == "from-nginx-1"
        r = await other.get("/v2/", headers={"X-Request-ID": "spoofed"})
        assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
        r = await proxy.get("/v2/", headers={"X-Request-ID": "bad id\twith tab"})
        assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
        first = (await proxy.get("/v2/")).headers["x-request-id"]
        assert first != (await proxy.get("/v2/")).headers["x-request-id"]


async def test_one_access_line_per_request_with_its_route_and_id(
    app: Starlette, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="registry.access"):
        digest = await push_blob(client, "team/app", b"logged")
        r = await client.get(f"/v2/team/app/blobs/{digest}", headers={"X-Request-ID": "req-7"})
        assert r.status_code == 200
    lines = [rec for rec in caplog.records if rec.name == "registry.access"]
    assert len(lines) == 2
    pull = lines[1]
    assert pull.request_id == "req-7"  # type: ignore[attr-defined]
    document = json.loads(JsonFormatter().format(pull))
    assert document["route"] == "/v2/{name:path}/blobs/{digest}"
    assert document["path"] == f"/v2/team/app/blobs/{digest}"
    assert document["status"] == 200
    assert document["bytes_out"] == len(b"logged")
    assert document["method"] == "GET"
    assert document["request_id"] == "req-7"
    assert document["duration_ms"] >= 0
    push = json.loads(JsonFormatter().format(lines[0]))
    assert push["bytes_in"] == len(b"logged") and push["status"] == 201
    text = TextFormatter().format(pull)
    assert text.endswith("[request req-7]")
    assert f"GET /v2/team/app/blobs/{digest} 200" in text


async def test_other_log_lines_of_a_request_carry_its_id(
    auth_app: Starlette, caplog: pytest.LogCaptureFixture
) -> None:
    """A line the services write (here: a failed login's warning) has the request ID;
    one written outside any request has none."""
    async with client_from(auth_app, "127.0.0.1") as client:
        with caplog.at_level(logging.WARNING, logger="registry.auth"):
            r = await client.get(
                "/token", auth=("alice", "wrong"), headers={"X-Request-ID": "login-9"}
            )
            assert r.status_code == 401
            logging.getLogger("registry.auth").warning("outside any request")
    failed, outside = [rec for rec in caplog.records if rec.name == "registry.auth"]
    assert "failed login for 'alice'" in failed.getMessage()
    assert json.loads(JsonFormatter().format(failed))["request_id"] == "login-9"
    assert "request_id" not in json.loads(JsonFormatter().format(outside))


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], io.StringIO]]:
    """logs.configure() as `registry serve` runs it, onto a buffer; the logging set-up
    of the test run back afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogRecordFactory())

    def configure(form: str) -> io.StringIO:
        stream = io.StringIO()
        monkeypatch.setattr("sys.stderr", stream)
        logs.configure("info", form)
        return stream

    yield configure
    root.handlers[:], level, factory = saved
    root.setLevel(level)
    logging.setLogRecordFactory(factory)
    monkeypatch.setattr(logs._Direct, "handler", None)


@pytest.mark.parametrize("form", ["text", "json"])
def test_a_direct_access_line_is_what_the_formatter_writes(
    form: str, configured: Callable[[str], io.StringIO], monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = configured(form)
    fields = {"method": "GET", "route": "/v2/", "path": '/v2/?x="q"', "status": 200}
    fields |= {"bytes_in": 0, "bytes_out": 2, "duration_ms": 1.5, "user": "", "address": None}
    args = ("GET", '/v2/?x="q"', 200, 0, 2, 1.5, "-", "-")
    moment = 1_764_600_000.0456
    monkeypatch.setattr("registry.logs.time.time", lambda: moment)
    with using(Context(actor_kind="anonymous", actor="", request_id="rid-1")):
        with monkeypatch.context() as direct:  # straight to the stream: no record
            direct.setattr(logs.ACCESS, "info", lambda *a, **k: pytest.fail("a record"))
            logs.access(fields, args)
        record = logs.ACCESS.makeRecord(
            "registry.access", logging.INFO, "", 0, logs.ACCESS_FORMAT, args, None, extra=fields
        )
    record.created, record.msecs = moment, 45.0
    (handler,) = logging.getLogger().handlers
    assert stream.getvalue() == handler.format(record) + "\n"
    line = stream.getvalue()
    assert ("2025-12-01T14:40:00.045Z" if form == "json" else "2025-12-01 14:40:00,045") in line
    assert "rid-1" in line


def test_access_lines_go_through_logging_when_a_handler_is_added(
    configured: Callable[[str], io.StringIO],
) -> None:
    stream = configured("text")
    seen: list[logging.LogRecord] = []
    extra = logging.Handler()
    extra.emit = seen.append  # type: ignore[method-assign]
    logs.ACCESS.addHandler(extra)
    try:
        logs.access({"status": 404}, ("GET", "/x", 404, 0, 0, 0.1, "-", "-"))
    finally:
        logs.ACCESS.removeHandler(extra)
    assert [r.getMessage() for r in seen] == ["GET /x 404 0 B in, 0 B out, 0.10 ms, user - from -"]
    assert "GET /x 404" in stream.getvalue()  # and on to the root's handler as before
