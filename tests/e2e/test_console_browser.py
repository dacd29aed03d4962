"""The web console in a real browser: Debian's headless Chromium, driven by Playwright,
against `registry serve` with authentication on. It logs in, searches, sorts, copies a
pull command, opens a manifest whose label and annotation are a script (shown as text,
never run), deletes a tag after confirming, manages a namespace's members and robots,
and logs out. Screenshots of the main pages go to `test-artifacts/console/`
(REGISTRY_TEST_ARTIFACTS sets the folder)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from playwright.sync_api import Browser, Page, expect

from tests.e2e.axe import assert_accessible
from tests.e2e.conftest import RegistryProcess
from tests.peers.receiver import Receiver

PASSWORD = "console-admin-password"
EVIL = "<script>window.pwned = 1</script>"
ARTIFACTS = Path(os.environ.get("REGISTRY_TEST_ARTIFACTS", "test-artifacts")) / "console"


def push(base: str, repo: str, tag: str, label: str = "") -> None:
    """An image pushed over /v2/ as the admin, with a label in its config; built at a
    time written to the nanosecond, with a history step that says nothing, as
    BuildKit writes them."""
    auth = ("root", PASSWORD)
    config = json.dumps(
        {
            "created": "2026-11-30T12:00:00.123456789Z",
            "os": "linux",
            "architecture": "amd64",
            "config": {"Labels": {"title": label}} if label else {},
            "history": [
                {"created": "2026-11-30T11:59:00Z", "created_by": "ADD rootfs.tar /"},
                {"created": "2026-11-30T12:00:00Z", "empty_layer": True},
            ],
        }
    ).encode()
    with httpx.Client(base_url=base, auth=auth, timeout=30) as client:
        descriptors = []
        for data in (config, f"layer of {repo}:{tag}".encode()):
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data)
            assert r.status_code == 201, r.text
            descriptors.append({"digest": digest, "size": len(data)})
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **descriptors[0]},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **descriptors[1]}],
            **({"annotations": {"org.example.note": label}} if label else {}),
        }
        r = client.put(
            f"/v2/{repo}/manifests/{tag}",
            content=json.dumps(manifest).encode(),
            headers={"Content-Type": manifest["mediaType"]},
        )
        assert r.status_code == 201, r.text


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    root = tmp_path_factory.mktemp("console")
    process = RegistryProcess(root / "data", {"REGISTRY_AUTH_ENABLED": "true"}).start()
    try:
        process.cli("user", "add", "root", "--admin", "--password-stdin", stdin=PASSWORD + "\n")
        process.cli("namespace", "add", "team", "--owner", "root")
        push(process.url, "team/app", "v1", EVIL)
        push(process.url, "team/app", "v2")
        push(process.url, "team/web", "latest")
        yield process
    finally:
        process.stop()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def log_in(page: Page) -> None:
    page.goto("/ui/login?next=/ui/")
    page.get_by_label("User name").fill("root")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Repositories")).to_be_visible()


def test_browse_copy_delete_and_log_out(browser: Browser, server: RegistryProcess) -> None:
    context = browser.new_context(base_url=server.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    page.goto("/")
    expect(page).to_have_url(f"{server.url}/ui/login?next=%2Fui%2F")
    shot(page, "login")
    page.get_by_label("User name").fill("root")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Repositories")).to_be_visible()
    expect(page.get_by_role("link", name="team/app")).to_be_visible()
    expect(page.get_by_role("link", name="team/web")).to_be_visible()
    shot(page, "repositories")

    page.get_by_label("Name contains").fill("web")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("link", name="team/web")).to_be_visible()
    expect(page.get_by_role("link", name="team/app")).to_have_count(0)

    page.goto("/ui/r/team/app/-/tags")
    names = page.locator("tbody tr td:first-child").all_inner_texts()
    assert names == ["v1", "v2"]
    page.get_by_role("link", name="newest push").click()
    assert page.locator("tbody tr td:first-child").all_inner_texts() == ["v2", "v1"]
    expect(page.get_by_text("linux/amd64").first).to_be_visible()
    shot(page, "tags")
    page.get_by_role("button", name="Copy the pull command of v1").click()
    copied = page.evaluate("navigator.clipboard.readText()")
    host = server.url.removeprefix("http://")
    assert copied == f"docker pull {host}/team/app:v1"

    page.get_by_role("link", name="v1", exact=True).click()
    expect(page.get_by_role("heading", name="Config")).to_be_visible()
    expect(page.get_by_role("cell", name=EVIL)).to_be_visible()  # the label, as text
    expect(page.locator("pre.json")).to_contain_text(f'"org.example.note": "{EVIL}"')
    assert page.evaluate("window.pwned") is None and dialogs == []
    shot(page, "manifest")

    page.goto("/ui/r/team/app/-/tags")
    page.get_by_role("row", name="v1").get_by_role("link", name="Delete").click()
    expect(page.get_by_role("heading", name="Delete team/app:v1?")).to_be_visible()
    page.get_by_role("button", name="Delete").click()
    assert page.locator("tbody tr td:first-child").all_inner_texts() == ["v2"]

    # Readable on a phone: nothing wider than the screen but the tables, which scroll.
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    expect(page.get_by_role("link", name="Namespaces")).to_be_visible()
    shot(page, "tags-phone")

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.goto("/ui/r/team/app/-/tags")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    context.close()


def test_namespace_member_robot_and_status(browser: Browser, server: RegistryProcess) -> None:
    server.cli("user", "add", "dana", "--password-stdin", stdin="dana-password\n")
    context = browser.new_context(base_url=server.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    page = context.new_page()
    log_in(page)
    page.get_by_role("link", name="Namespaces").click()
    page.get_by_label("Name", exact=True).fill("ops")
    page.get_by_label("Owner (a user; optional)").fill("root")
    page.get_by_role("button", name="Create namespace").click()
    expect(page.get_by_role("heading", name="Namespace ops")).to_be_visible()

    page.get_by_label("User", exact=True).fill("dana")
    page.get_by_label("Role", exact=True).select_option("developer")
    page.get_by_role("button", name="Add member").click()
    row = page.get_by_role("row", name="dana")
    expect(row.get_by_role("combobox")).to_have_value("developer")
    row.get_by_role("combobox").select_option("maintainer")
    row.get_by_role("button", name="Change the role of dana").click()
    expect(page.get_by_role("row", name="dana").get_by_role("combobox")).to_have_value("maintainer")

    page.get_by_label("Name (the robot is robot$ops+name)").fill("deploy")
    page.get_by_label("push").check()
    page.get_by_role("button", name="Add robot").click()
    secret = page.locator("#robot-secret").inner_text()
    page.get_by_role("button", name="Copy the robot's secret").click()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    shot(page, "namespace")
    token = httpx.get(
        f"{server.url}/token",
        params={"service": "registry", "scope": "repository:ops/app:push"},
        auth=("robot$ops+deploy", secret),
    )
    assert token.status_code == 200, token.text
    page.goto("/ui/namespaces/ops")  # the secret was shown once
    expect(page.get_by_role("cell", name="robot$ops+deploy", exact=True)).to_be_visible()
    expect(page.locator("#robot-secret")).to_have_count(0)

    page.get_by_role("link", name="Status").click()
    expect(page.get_by_role("heading", name="Garbage collection")).to_be_visible()
    shot(page, "status")
    context.close()


def test_untagged_images_are_listed_deleted_and_explained(
    browser: Browser, server: RegistryProcess
) -> None:
    push(server.url, "team/tools", "v1")
    push(server.url, "team/tools", "v2")
    context = browser.new_context(base_url=server.url)
    page = context.new_page()
    log_in(page)
    page.goto("/ui/r/team/tools/-/tags")
    expect(page.get_by_role("heading", name="Untagged manifests")).to_have_count(0)

    # Deleting a tag offers its image, ticked; left unticked, the image stays, untagged.
    page.get_by_role("row", name="v1").get_by_role("link", name="Delete").click()
    also = page.get_by_label("Also delete its image")
    expect(also).to_be_checked()
    also.uncheck()
    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("heading", name="Untagged manifests")).to_be_visible()
    untagged = page.get_by_role("table", name="Untagged manifests of team/tools")
    expect(untagged.locator("tbody tr")).to_have_count(1)
    shot(page, "untagged")

    # The status page says what it holds, and that it stays until deleted.
    page.get_by_role("link", name="Status").click()
    expect(page.locator("ul.waiting")).to_contain_text("held by 1 untagged manifests")
    expect(page.locator("ul.waiting")).to_contain_text("kept until deleted")

    page.goto("/ui/r/team/tools/-/tags")
    untagged.get_by_role("link", name="Delete").click()
    expect(page.get_by_role("heading", name="Delete team/tools@sha256:")).to_be_visible()
    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("heading", name="Untagged manifests")).to_have_count(0)

    # The last tag, with its image: the repository is empty, and leaves the list.
    page.get_by_role("row", name="v2").get_by_role("link", name="Delete").click()
    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_text("This repository is empty")).to_be_visible()
    expect(page.get_by_role("link", name="Delete the repository")).to_be_visible()
    page.goto("/ui/")
    expect(page.get_by_role("link", name="team/app")).to_be_visible()
    expect(page.get_by_role("link", name="team/tools")).to_have_count(0)
    context.close()


def test_namespace_settings_preview_retention_before_saving_it(
    browser: Browser, server: RegistryProcess
) -> None:
    server.cli("namespace", "add", "qa", "--owner", "root")
    for tag in ("a1", "b1", "c1"):
        push(server.url, "qa/app", tag)
    context = browser.new_context(base_url=server.url)
    page = context.new_page()
    log_in(page)
    page.goto("/ui/namespaces/qa")
    page.get_by_role("link", name="Settings: visibility, immutable tags, retention, quota").click()
    expect(page.get_by_role("heading", name="Settings of qa")).to_be_visible()
    assert_accessible(page)

    page.get_by_label("Patterns, one a line").fill("a*")
    page.get_by_role("button", name="Save immutable tags").click()
    expect(page.get_by_role("status")).to_have_text("Immutable tags saved.")

    # The preview: the last pushed stays, the immutable one too; nothing is saved yet.
    page.get_by_label("Delete tags by these rules").check()
    page.get_by_label("Keep the last pushed (tags per repository)").fill("1")
    page.get_by_role("button", name="Preview").click()
    preview = page.locator("#retention-preview")
    expect(preview.get_by_role("row", name="qa/app")).to_contain_text("b1")
    expect(preview).not_to_contain_text("c1")
    expect(preview).not_to_contain_text("a1")
    expect(page.get_by_label("Keep the last pushed (tags per repository)")).to_have_value("1")
    shot(page, "settings-preview")
    assert_accessible(page)
    page.get_by_role("button", name="Save retention").click()
    expect(page.get_by_role("status")).to_have_text("Retention saved.")

    # A mistake is said beside its form, and what was typed stays.
    page.get_by_label("Keep the last pushed (tags per repository)").fill("many")
    page.get_by_role("button", name="Save retention").click()
    expect(page.get_by_role("alert")).to_contain_text("'many' is not a whole number")
    expect(page.get_by_label("Keep the last pushed (tags per repository)")).to_have_value("many")
    assert_accessible(page)

    page.get_by_label("Quota (empty: none)").fill("2")
    page.get_by_label("Unit").select_option("MiB")
    page.get_by_role("button", name="Save quota").click()
    expect(page.get_by_text("of 2.0 MiB")).to_be_visible()
    expect(page.locator("meter#quota-used")).to_have_attribute("max", str(2 * 1024 * 1024))
    page.get_by_label("Public: anyone, even without an account, may pull").check()
    page.get_by_role("button", name="Save visibility").click()
    expect(page.get_by_text("public: anyone may pull")).to_be_visible()
    shot(page, "settings")
    context.close()


def test_a_webhook_is_added_tested_and_watched(browser: Browser, server: RegistryProcess) -> None:
    receiver = Receiver()
    context = browser.new_context(base_url=server.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    page = context.new_page()
    try:
        log_in(page)
        page.get_by_role("link", name="Webhooks").click()
        expect(page.get_by_role("heading", name="Webhooks")).to_be_visible()
        page.get_by_label("Namespace").select_option(label="every namespace (global)")
        page.get_by_label("URL the events are POSTed to").fill(receiver.url)
        page.get_by_label("blob").check()
        page.get_by_role("button", name="Add webhook").click()
        secret = page.locator("#webhook-secret").inner_text()
        assert_accessible(page)  # before the copy button says "Copied" for a moment
        page.get_by_role("button", name="Copy the webhook's secret").click()
        assert page.evaluate("navigator.clipboard.readText()") == secret
        page.get_by_role("link", name=receiver.url).click()
        page.get_by_role("button", name="Send a test delivery").click()
        expect(page.locator("#test-result")).to_contain_text("The receiver answered 200")
        assert receiver.received[0].signed_with(secret)
        push(server.url, "team/hooked", "v1")  # two blobs and a manifest
        for _ in range(100):
            page.reload()
            if page.get_by_role("cell", name="delivered", exact=True).count() == 3:
                break
            page.wait_for_timeout(100)
        expect(page.get_by_role("cell", name="delivered", exact=True)).to_have_count(3)
        expect(page.get_by_role("table", name="The last 3 attempts")).to_be_visible()
        shot(page, "webhook")
        assert_accessible(page)
    finally:
        context.close()
        receiver.close()


def test_a_personal_access_token_is_made_shown_once_used_and_revoked(
    browser: Browser, server: RegistryProcess
) -> None:
    context = browser.new_context(base_url=server.url)
    page = context.new_page()
    try:
        log_in(page)
        page.goto("/ui/account")
        expect(
            page.get_by_role("table", name="Each role you hold and where it comes from")
        ).to_be_visible()
        page.get_by_label("Token name").fill("browser-ci")
        page.get_by_label("Scopes, one per line").fill("team=pull")
        page.get_by_label("Expires after").select_option(label="7 days")
        page.get_by_role("button", name="Make a token").click()
        token = page.locator("code.secret").inner_text()
        assert token.startswith("rpat_")
        assert_accessible(page)
        shot(page, "token")
        login = httpx.get(f"{server.url}/token", auth=("root", token))
        assert login.status_code == 200, login.text
        page.goto("/ui/account")
        expect(page.locator("code.secret")).to_have_count(0)
        expect(page.get_by_role("table", name="Your tokens")).to_contain_text("browser-ci")
        assert_accessible(page)
        page.get_by_role("button", name="Revoke the token browser-ci").click()
        expect(page.get_by_text("You have no tokens.")).to_be_visible()
        assert httpx.get(f"{server.url}/token", auth=("root", token)).status_code == 401
    finally:
        context.close()


def log_in_as(page: Page, user: str, password: str) -> None:
    page.goto("/ui/login")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def test_an_owner_a_developer_and_a_guest(browser: Browser, server: RegistryProcess) -> None:
    """An owner lands on their dashboard and manages their namespace's settings, webhooks
    and audit log; a developer of it is refused those pages with the reason; a guest is
    sent to log in."""
    for user in ("olive", "devon"):
        server.cli("user", "add", user, "--password-stdin", stdin=f"{user}-password\n")
    server.cli("namespace", "add", "shop", "--owner", "olive")
    server.cli("member", "set", "shop", "devon", "developer")
    push(server.url, "shop/cart", "v1")
    context = browser.new_context(base_url=server.url)
    page = context.new_page()

    log_in_as(page, "olive", "olive-password")
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.get_by_text("Your namespaces: olive, shop")).to_be_visible()
    page.goto("/ui/namespaces/shop/settings")
    page.get_by_label("Patterns, one a line").fill("v*")
    page.get_by_role("button", name="Save immutable tags").click()
    expect(page.get_by_role("status")).to_have_text("Immutable tags saved.")
    expect(page.get_by_text("An admin sets it.")).to_be_visible()  # the quota
    page.get_by_role("link", name="Audit").click()
    page.get_by_label("Namespace").select_option("shop")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("cell", name="policy.update").first).to_be_visible()
    shot(page, "audit-owner")
    assert_accessible(page)
    page.get_by_role("link", name="Webhooks").click()
    expect(page.get_by_label("Namespace")).to_contain_text("shop")
    expect(page.get_by_label("Namespace")).not_to_contain_text("every namespace")
    page.get_by_role("button", name="Log out").click()

    log_in_as(page, "devon", "devon-password")
    for path in ("/ui/namespaces/shop/settings", "/ui/namespaces/shop"):
        response = page.goto(path)
        assert response is not None and response.status == 403, path
        expect(page.get_by_role("alert")).to_contain_text("only an owner of 'shop' or an admin")
    response = page.goto("/ui/status")
    assert response is not None and response.status == 403
    page.goto("/ui/audit?namespace=shop")
    expect(page.get_by_role("alert")).to_contain_text("only owners of 'shop' read its audit log")
    page.get_by_role("button", name="Log out").click()

    for path in ("/ui/dashboard", "/ui/webhooks", "/ui/audit", "/ui/account"):
        page.goto(path)
        expect(page.get_by_role("heading", name="Log in")).to_be_visible()
        assert "/ui/login?next=" in page.url, path
    context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_console_page_passes_axe_core(
    browser: Browser, server: RegistryProcess, scheme: str
) -> None:
    """WCAG 2.1 A and AA and axe's best practices: no serious or critical violation on
    any page, logged out or in, on a desktop and a phone, in the light theme and in the
    dark one the system's setting selects."""
    context = browser.new_context(base_url=server.url, color_scheme=scheme)
    page = context.new_page()
    dark = page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
    assert dark == (scheme == "dark")
    page.goto("/ui/login")
    assert_accessible(page)
    log_in(page)
    digest = httpx.get(
        f"{server.url}/v2/team/app/manifests/v2",
        auth=("root", PASSWORD),
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    ).headers["docker-content-digest"]
    # A replication rule and a run whose items are listed: team/app's tags, skipped
    # (it copies artifacts only), so the other tests' repositories stay as they are.
    # Made by the first scheme's test; the second finds them (409).
    admin = httpx.Client(base_url=server.url, auth=("root", PASSWORD))
    remote = {"name": "self", "url": server.url, "username": "root", "password": PASSWORD}
    admin.post("/api/v1/remotes", json=remote)
    rule = {"name": "copy", "direction": "push", "remote": "self", "destination": "copy"}
    admin.post(
        "/api/v1/replication/rules",
        json={**rule, "repositories": ["team/app"], "kinds": ["artifact"]},
    )
    runs = admin.get("/api/v1/replication/runs").json()["runs"]
    run = runs[0]["id"] if runs else admin.post("/api/v1/replication/rules/copy/run").json()["run"]
    # A trusted key, for the signatures page's table.
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    admin.post("/api/v1/trust/keys", json={"name": "release", "pem": pem.decode()})
    admin.close()
    pages = [
        "/ui/dashboard",
        "/ui/",
        "/ui/replication",
        f"/ui/replication/runs/{run}",
        "/ui/trust",
        "/ui/trust/keys/-/release/remove",
        "/ui/r/team/app/-/tags",
        f"/ui/r/team/app/-/manifests/{digest}",
        "/ui/r/team/app/-/tags/v2/delete",
        "/ui/namespaces",
        "/ui/namespaces/team",
        "/ui/namespaces/team/settings",
        "/ui/webhooks",
        "/ui/audit",
        "/ui/account",
        "/ui/audit?namespace=team&action=push&outcome=success",
        "/ui/users",
        "/ui/status",
        "/ui/no-such-page",
    ]
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 844})
        for path in pages:
            page.goto(path)
            assert_accessible(page)
            if path == "/ui/dashboard" and width == 1280:
                expect(page.locator("figure.chart svg")).to_have_count(3)
                shot(page, f"dashboard-{scheme}")  # README.md's is the light one
            # Nothing wider than the screen but the tables' regions, which scroll.
            assert page.evaluate("document.documentElement.scrollWidth") <= width, path
    if scheme == "dark":
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(22, 24, 28)", background
        shot(page, "dark")
    context.close()


def test_the_console_works_from_the_keyboard(browser: Browser, server: RegistryProcess) -> None:
    """Logging in, skipping to the content, and reaching a tag's copy button, its link
    and the next page, with the keys only; the focus is always visible."""
    context = browser.new_context(base_url=server.url)
    page = context.new_page()
    page.goto("/ui/login?next=/ui/")
    page.keyboard.type("root")  # the name field has the focus
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Repositories")).to_be_visible()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.url.endswith("#main")
    seen = []
    for _ in range(40):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            "[document.activeElement.tagName, document.activeElement.textContent.trim(),"
            " getComputedStyle(document.activeElement).outlineStyle]"
        )
        seen.append(focused)
        if focused[:2] == ["A", "team/app"]:
            break
    assert seen[-1][:2] == ["A", "team/app"], seen
    assert all(style != "none" for _, _, style in seen), seen  # the ring shows where
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="team/app")).to_be_visible()
    context.close()


def one_line(page: Page, selector: str) -> bool:
    """Whether each element `selector` finds is laid out on one line (an inline element
    broken across lines has a box on each)."""
    counts = page.eval_on_selector_all(selector, "els => els.map(e => e.getClientRects().length)")
    return bool(counts) and all(count == 1 for count in counts)


def test_the_console_reads_well_on_a_phone_and_a_desktop(
    browser: Browser, server: RegistryProcess
) -> None:
    push(server.url, "team/a-rather-long-repository-name", "release-2026.11.30-build.1234")
    context = browser.new_context(base_url=server.url)
    page = context.new_page()
    log_in(page)
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 844})
        page.goto("/ui/r/team/a-rather-long-repository-name/-/tags")
        row = page.get_by_role("row", name="release-2026.11.30-build.1234")
        # Times as people read them, never RFC 3339 to the nanosecond.
        expect(row).to_contain_text("2026-11-30 12:00 UTC")
        expect(row).not_to_contain_text("T12:00:00")
        # The pull command and the tag are never broken inside a word.
        assert one_line(page, "code.pull") and one_line(page, "td.nowrap a")
        # Nothing is wider than the screen but the table, which scrolls on its own.
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        table = page.locator("div.scroll").first
        if width == 390:
            assert table.evaluate("e => e.scrollWidth > e.clientWidth")
            shot(page, "tags-phone-long")
    # History steps that say nothing are left out.
    page.get_by_role("link", name="release-2026.11.30-build.1234").click()
    expect(page.locator("ol li")).to_have_count(1)
    expect(page.locator("ol li")).to_have_text("ADD rootfs.tar /")
    expect(page.get_by_text("2026-11-30 12:00 UTC")).to_be_visible()

    # A page that does not exist says so.
    for missing in ("/ui/no-such-page", "/ui/r/team/no-such-repository/-/tags"):
        response = page.goto(missing)
        assert response is not None and response.status == 404
        expect(page.get_by_role("heading", name="Not found")).to_be_visible()

    # The actions of a robot, in one order wherever they are listed.
    page.goto("/ui/namespaces/team")
    boxes = page.locator("input[name=actions]")
    assert [boxes.nth(i).get_attribute("value") for i in range(3)] == ["pull", "push", "delete"]
    page.get_by_label("Name (the robot is robot$team+name)").fill("ordered")
    page.get_by_label("delete").check()
    page.get_by_role("button", name="Add robot").click()
    expect(page.get_by_role("row", name="robot$team+ordered")).to_contain_text("pull, delete")
    context.close()


def test_the_mirror_status_reads_as_words_and_sizes(
    browser: Browser, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("mirror-console")
    mirror = RegistryProcess(
        root / "data",
        {
            "REGISTRY_AUTH_ENABLED": "true",
            "REGISTRY_MIRROR_ENABLED": "true",
            "REGISTRY_MIRROR_UPSTREAMS": "http://127.0.0.1:9",  # nothing is asked of it
        },
    ).start()
    try:
        mirror.cli("user", "add", "root", "--admin", "--password-stdin", stdin=PASSWORD + "\n")
        context = browser.new_context(base_url=mirror.url)
        page = context.new_page()
        log_in(page)
        page.goto("/ui/status")
        counters = page.locator("table.counters")
        expect(counters).to_contain_text("Blob bytes fetched from the upstream")
        expect(counters).to_contain_text("Manifests served from the cache")
        expect(counters).not_to_contain_text("upstream_bytes")
        row = counters.get_by_role("row", name="Blob bytes fetched from the upstream")
        expect(row.get_by_role("cell")).to_have_text("0 B")
        shot(page, "status-mirror")
        context.close()
    finally:
        mirror.stop()
