"""Signatures in the console: an admin trusts a key for every namespace and an owner one
for their namespace, each sets what their namespaces' policies are; a key that is not
one is refused beside the form with what was typed escaped; removing a key asks first;
an owner reaches neither the registry's keys nor another namespace's policy."""

from __future__ import annotations

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette

from registry.wiring import Registry
from tests.api.console import log_in
from tests.api.test_console_webhooks import submit

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("storage_env", ["filesystem"], indirect=True),
]


def public_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


async def test_an_admin_trusts_keys_and_sets_policies(
    web: httpx.AsyncClient, auth_app: Starlette
) -> None:
    registry: Registry = auth_app.state.registry
    await log_in(web, "root")
    page = "/ui/trust"
    r = await submit(web, page, "/ui/trust/keys", namespace="", name="release", pem=public_pem())
    assert r.status_code == 200 and "Key release (sha256:" in r.text
    shown = (await web.get(page)).text
    assert "<td>release" in shown and "every namespace" in shown and "ecdsa-secp256r1" in shown
    # Not a key: said beside the form, what was typed shown escaped.
    r = await submit(web, page, "/ui/trust/keys", namespace="team", name="<b>x</b>", pem="nope")
    assert r.status_code == 400 and "name: lower-case letters and digits" in r.text
    assert "<b>x</b>" not in r.text and "&lt;b&gt;x&lt;/b&gt;" in r.text
    r = await submit(web, page, "/ui/trust/keys", namespace="team", name="x", pem="<i>nope")
    assert r.status_code == 400 and "pem: " in r.text and "&lt;i&gt;nope</textarea>" in r.text
    # The policy of team, from its row's form.
    r = await submit(web, page, "/ui/trust/policies/team", signature_policy="enforce")
    assert r.status_code == 200 and "Namespace team: signature policy enforce." in r.text
    assert (await registry.policies.get("team")).signature_policy == "enforce"
    r = await submit(web, page, "/ui/trust/policies/team", signature_policy="sometimes")
    assert r.status_code == 400 and "signature_policy: off, audit" in r.text
    # Removing asks first, then the key is gone.
    confirm = await web.get("/ui/trust/keys/-/release/remove")
    assert "What only this key signed counts as unsigned at once" in confirm.text
    r = await submit(web, "/ui/trust/keys/-/release/remove", "/ui/trust/keys/-/release/remove")
    assert r.status_code == 303 and r.headers["location"] == "/ui/trust"
    assert await registry.trust.keys(None) == []


async def test_an_owner_keeps_their_namespaces_keys_and_reaches_no_other(
    web: httpx.AsyncClient, auth_app: Starlette
) -> None:
    registry: Registry = auth_app.state.registry
    await registry.trust.add_key("", "global", public_pem())
    await log_in(web, "alice")
    page = "/ui/trust"
    shown = (await web.get(page)).text
    assert "global" not in shown  # the registry's keys are the admins'
    assert '<option value="">' not in shown and '<option value="team">team</option>' in shown
    r = await submit(web, page, "/ui/trust/keys", namespace="team", name="ci", pem=public_pem())
    assert r.status_code == 200 and "Key ci (sha256:" in r.text
    r = await submit(web, page, "/ui/trust/keys", namespace="", name="mine", pem=public_pem())
    assert r.status_code == 403
    assert (await web.get("/ui/trust/keys/-/global/remove")).status_code == 403
    await log_in(web, "eve")
    assert "Signature policy of team" not in (await web.get(page)).text
    r = await submit(web, page, "/ui/trust/policies/team", signature_policy="off")
    assert r.status_code == 403
    assert [k.name for k in await registry.trust.keys("team")] == ["ci"]
