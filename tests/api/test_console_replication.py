"""Replication in the console, against a real Distribution: an admin adds a remote and a
rule, runs it and reads each item's outcome; a failed run's items are retried in one
click; an owner manages only their namespace's, and what anyone typed is shown escaped."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette

from registry.wiring import Registry
from tests.api.console import log_in
from tests.api.test_console_webhooks import submit
from tests.peers.distribution import Distribution

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("storage_env", ["filesystem"], indirect=True),
]
AUTH_SETTINGS = {
    "replication_allow_private_targets": "true",  # Distribution is on 127.0.0.1
    "replication_attempts": "1",
}


@pytest.fixture
def distribution(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Distribution]:
    server = Distribution(tmp_path_factory.mktemp("distribution")).start()
    yield server
    server.stop()


def _run_link(html: str) -> str:
    found = re.search(r'href="(/ui/replication/runs/\d+)"', html)
    assert found, html
    return found[1]


async def test_an_admin_adds_a_remote_and_a_rule_runs_it_and_retries_what_failed(
    web: httpx.AsyncClient, auth_app: Starlette, distribution: Distribution
) -> None:
    registry: Registry = auth_app.state.registry
    await log_in(web, "root")
    r = await submit(
        web,
        "/ui/replication",
        "/ui/replication/remotes",
        namespace="",
        name="dist",
        url=distribution.url,
        verify_tls="on",
    )
    assert r.status_code == 303, r.text
    shown = (await web.get("/ui/replication")).text
    assert "<td>dist</td>" in shown and "every namespace" in shown
    r = await submit(web, "/ui/replication", "/ui/replication/remotes/-/dist/test")
    assert "Remote dist answers." in r.text
    # A refusal is said beside its form, with what was typed escaped.
    form = {
        "namespace": "",
        "name": "promote",
        "direction": "push",
        "remote": "dist",
        "repositories": "team/app",
        "tags": "v1 <b>x</b>",
        "kinds": ["image", "index"],
        "strip": "0",
        "blobs_at_once": "4",
        "overwrite": "on",
    }
    page, rules = "/ui/replication", "/ui/replication/rules"
    r = await submit(web, page, rules, **form, trigger="schedule", schedule="whenever")
    assert r.status_code == 400 and "schedule: a cron expression" in r.text
    assert "<b>x</b>" not in r.text and "v1 &lt;b&gt;x&lt;/b&gt;" in r.text
    r = await submit(web, page, rules, **form, trigger="manual")
    assert r.status_code == 303, r.text
    shown = (await web.get("/ui/replication")).text
    assert "tags v1 &lt;b&gt;x&lt;/b&gt;" in shown and "<b>x</b>" not in shown

    # Run now: the run's page, its item copied once the worker has been by.
    distribution.stop()
    r = await submit(web, "/ui/replication", "/ui/replication/rules/-/promote/run")
    assert r.status_code == 303
    run_page = r.headers["location"]
    await registry.replicator.drain()
    shown = (await web.get(run_page)).text
    assert "State: <strong>failed</strong>" in shown
    assert "could not be reached" in shown and "Retry the failed items" in shown
    distribution.start()
    r = await submit(web, run_page, f"{run_page}/retry")
    assert r.status_code == 303 and r.headers["location"].endswith(
        f"?retried={run_page.rsplit('/', 1)[1]}"
    )
    await registry.replicator.drain()
    shown = (await web.get(r.headers["location"])).text
    assert "State: <strong>succeeded</strong>" in shown, shown
    assert "<code>team/app:v1</code>" in shown and "<td>copied</td>" in shown
    assert "are queued again here" in shown
    copied = (await web.get(r.headers["location"], params={"state": "copied"})).text
    assert "<td>copied</td>" in copied
    assert "No items skipped." in (await web.get(run_page, params={"state": "skipped"})).text
    overview = (await web.get("/ui/replication")).text
    assert overview.count('href="/ui/replication/runs/') == 2

    # The remote is in use; the rule goes first, then the remote.
    r = await submit(web, "/ui/replication", "/ui/replication/remotes/-/dist/remove")
    assert r.status_code == 409 and "used by the replication rules promote" in r.text
    r = await submit(
        web, "/ui/replication/rules/-/promote/remove", "/ui/replication/rules/-/promote/remove"
    )
    assert r.status_code == 303
    assert (await web.get(run_page)).status_code == 404
    r = await submit(
        web, "/ui/replication/remotes/-/dist/remove", "/ui/replication/remotes/-/dist/remove"
    )
    assert r.status_code == 303
    assert "No remotes yet." in (await web.get("/ui/replication")).text


async def test_an_owner_keeps_their_namespaces_and_reaches_no_other(
    web: httpx.AsyncClient, auth_app: Starlette, distribution: Distribution
) -> None:
    registry: Registry = auth_app.state.registry
    await registry.remotes.add("", "global", distribution.url)
    await log_in(web, "alice")
    shown = (await web.get("/ui/replication")).text
    assert "global" not in shown  # the registry's own remote is the admins'
    assert '<option value="team">team</option>' in shown
    assert '<option value="">' not in shown  # no "every namespace" to add to
    r = await submit(
        web,
        "/ui/replication",
        "/ui/replication/remotes",
        namespace="",
        name="mine",
        url=distribution.url,
    )
    assert r.status_code == 403
    r = await submit(
        web,
        "/ui/replication",
        "/ui/replication/remotes",
        namespace="team",
        name="mine",
        url=distribution.url,
    )
    assert r.status_code == 303, r.text
    r = await submit(
        web,
        "/ui/replication",
        "/ui/replication/rules",
        namespace="team",
        name="out",
        direction="push",
        remote="mine",
        kinds=["image"],
        trigger="manual",
    )
    assert r.status_code == 303, r.text
    r = await submit(web, "/ui/replication", "/ui/replication/rules/team/out/run")
    run_page = r.headers["location"]
    await registry.replicator.drain()
    assert "State: <strong>succeeded</strong>" in (await web.get(run_page)).text
    # Another's: refused, the registry's rules and runs too.
    r = await submit(web, "/ui/replication", "/ui/replication/remotes/-/global/test")
    assert r.status_code == 403
    await log_in(web, "eve")
    assert (await web.get(run_page)).status_code == 403
    shown = (await web.get("/ui/replication")).text
    assert "No rules in the namespaces you own." in shown and "<td>out</td>" not in shown
    r = await submit(web, "/ui/replication", "/ui/replication/rules/team/out/run")
    assert r.status_code == 403
