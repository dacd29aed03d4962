"""`registry user|namespace|member|robot` and `purge-uploads`, run in process through
registry.cli.main."""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import httpx
import pytest
from sqlalchemy import update

from registry.app import create_app
from registry.cli import main
from registry.config import load_settings
from registry.metadata.models import Upload
from tests.helpers import push_image

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    monkeypatch.setenv("REGISTRY_DATA_DIR", str(tmp_path / "data"))

    def run(*args: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def ok(cli: Run, *args: str, stdin: str = "") -> str:
    code, out, err = cli(*args, stdin=stdin)
    assert code == 0, err
    return out


def token_status(data_dir: Path, user: str, password: str) -> int:
    """What GET /token answers these credentials, in an app on the same data folder."""
    return anyio.run(_token_status, data_dir, user, password)


async def _token_status(data_dir: Path, user: str, password: str) -> int:
    settings = load_settings(None, {"REGISTRY_DATA_DIR": str(data_dir)})
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://registry.test") as c:
        status = (await c.get("/token", auth=(user, password))).status_code
    await app.state.registry.close()
    return status


def test_account_commands(cli: Run, tmp_path: Path) -> None:
    out = ok(cli, "user", "add", "alice", "--password-stdin", stdin="pw-alice-1\n")
    assert out == "created user alice with personal namespace alice\n"
    ok(cli, "user", "add", "root", "--admin", "--password-stdin", stdin="pw-root-12\n")
    assert ok(cli, "user", "list").splitlines() == ["alice", "root\tadmin"]
    ok(cli, "namespace", "add", "team", "--owner", "alice")
    ok(cli, "namespace", "add", "pub", "--public")
    assert ok(cli, "namespace", "list").splitlines() == [
        "alice\tprivate\t1 members",
        "pub\tpublic\t0 members",
        "root\tprivate\t1 members",
        "team\tprivate\t1 members",
    ]
    ok(cli, "user", "add", "bob", "--password-stdin", stdin="pw-bob-123\n")
    ok(cli, "member", "set", "team", "bob", "maintainer")
    assert ok(cli, "member", "list", "team").splitlines() == ["alice\towner", "bob\tmaintainer"]
    ok(cli, "member", "rm", "team", "bob")
    assert ok(cli, "member", "list", "team").splitlines() == ["alice\towner"]
    ok(cli, "namespace", "set", "team", "--public")
    assert "team\tpublic" in ok(cli, "namespace", "list")

    code, out, err = cli(
        "robot", "add", "team+ci", "--grant", "team=pull,push", "--expires-days", "7"
    )
    assert code == 0
    secret = out.strip()
    assert len(secret) >= 40
    assert "\n" not in secret
    assert "robot$team+ci" in err
    assert ok(cli, "robot", "list").startswith("robot$team+ci\tteam=pull,push\texpires ")
    data = tmp_path / "data"
    assert token_status(data, "robot$team+ci", secret) == 200

    ok(cli, "user", "set", "bob", "--disabled")
    assert "bob\tdisabled" in ok(cli, "user", "list")
    assert token_status(data, "bob", "pw-bob-123") == 401
    ok(cli, "user", "passwd", "alice", "--password-stdin", stdin="pw-alice-2\n")
    assert token_status(data, "alice", "pw-alice-2") == 200
    assert token_status(data, "alice", "pw-alice-1") == 401
    ok(cli, "robot", "rm", "robot$team+ci")
    assert ok(cli, "robot", "list") == ""
    assert token_status(data, "robot$team+ci", secret) == 401
    # A robot across namespaces: by name, and by a pattern that covers later ones.
    ok(cli, "robot", "add", "release", "--grant", "team=pull,push", "--grant", "t*=pull")
    listed = ok(cli, "robot", "list").splitlines()
    assert listed == ["robot$release\tt*=pull team=pull,push\texpires never"]
    ok(cli, "robot", "rm", "robot$release")
    ok(cli, "user", "rm", "bob")
    ok(cli, "namespace", "rm", "pub")
    assert "pub\t" not in ok(cli, "namespace", "list")


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("user", "add", "carol", "--password-stdin"), "short\n", "at least 8 characters"),
        (("user", "add", "Carol", "--password-stdin"), "long enough\n", "invalid user name"),
        (("user", "add", "alice", "--password-stdin"), "long enough\n", "already exists"),
        (("user", "rm", "nobody"), "", "no user named 'nobody'"),
        (("member", "set", "nowhere", "alice", "guest"), "", "no namespace named 'nowhere'"),
        (("robot", "add", "ci", "--grant", "team"), "", "NAMESPACE=ACTIONS"),
        (("robot", "add", "ci", "--grant", "nowhere=pull"), "", "no namespace named"),
        (("robot", "add", "ci", "--grant", "alice=fly"), "", "actions must be some of"),
    ],
)
def test_account_command_errors(cli: Run, args: tuple[str, ...], stdin: str, message: str) -> None:
    ok(cli, "user", "add", "alice", "--password-stdin", stdin="pw-alice-1\n")
    code, _, err = cli(*args, stdin=stdin)
    assert code == 1
    assert err.startswith("registry: ")
    assert message in err
    assert err.count("\n") == 1


def test_purge_uploads_ends_idle_sessions(cli: Run, tmp_path: Path) -> None:
    async def start_two() -> tuple[str, str]:
        settings = load_settings(None, {"REGISTRY_DATA_DIR": str(tmp_path / "data")})
        app = create_app(settings)
        uploads = app.state.registry.uploads
        old, fresh = await uploads.start("team/app", "cli"), await uploads.start("team/app", "cli")
        async with app.state.registry.db.write() as conn:
            await conn.execute(
                update(Upload)
                .where(Upload.id == old)
                .values(updated_at=datetime.now(UTC) - timedelta(days=2))
            )
        await app.state.registry.close()
        return old, fresh

    ok(cli, "migrate")
    old, fresh = anyio.run(start_two)
    assert ok(cli, "purge-uploads", "--idle-hours", "24") == (
        "ended 1 upload sessions idle for more than 24 hours\n"
    )
    uploads = tmp_path / "data" / "storage" / "uploads"
    remaining = [p.name for p in uploads.iterdir()]
    assert old not in remaining
    assert remaining == [fresh]


def test_gc_lists_then_deletes_what_nothing_references(
    cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGISTRY_GC_BLOB_LEASE_SECONDS", "1")
    monkeypatch.setenv("REGISTRY_AUTH_ENABLED", "false")

    async def push(data: bytes) -> str:
        settings = load_settings(None, dict(os.environ))
        app = create_app(settings)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://r") as c:
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            r = await c.post("/v2/team/app/blobs/uploads/", params={"digest": digest}, content=data)
            assert r.status_code == 201
        await app.state.registry.close()
        return digest

    ok(cli, "migrate")
    digest = anyio.run(push, b"never referenced")
    code, out, err = cli("gc")
    assert (code, out) == (
        0,
        "deleted 0 manifests, 0 blobs (0 B); 0 postponed by their lease; "
        "ended 0 abandoned uploads\n",
    ), err
    # Not yet: the dry run says what holds it, and until when.
    code, out, err = cli("gc", "--dry-run")
    assert (code, out) == (0, "")
    said = err.strip().splitlines()[-4:]
    assert said[0] == "0 blobs (0 B) would be deleted now; 1 queued for a look in all"
    assert said[1].startswith("0 B in 0 blobs: due, deleted by the next pass (every 60 s")
    assert said[2].startswith(
        "16 B in 1 blobs nothing references: kept by their lease, 1 s to 2 s after the "
        "last upload, mount or HEAD of each (gc.blob_lease_seconds); the last ends at "
    )
    assert said[3] == "0 B held by 0 untagged manifests (no tag points at them)."
    time.sleep(2.2)  # a renewal lasts two leases
    code, out, err = cli("gc", "--dry-run")
    assert code == 0, err
    assert out == f"{digest}\t{len(b'never referenced')}\n"
    said = err.strip().splitlines()[-4:]
    assert said[0] == "1 blobs (16 B) would be deleted now; 1 queued for a look in all"
    assert said[1].startswith("16 B in 1 blobs: due, deleted by the next pass")
    assert said[2].startswith("0 B in 0 blobs nothing references: kept by their lease")
    code, out, err = cli("gc")
    assert code == 0, err
    assert out.startswith("deleted 0 manifests, 1 blobs (16 B);")
    code, out, err = cli("gc", "--dry-run")
    assert (code, out) == (0, "")
    assert "0 blobs (0 B) would be deleted now; 0 queued for a look in all" in err


def test_check_reports_and_repairs(cli: Run, tmp_path: Path) -> None:
    ok(cli, "migrate")
    code, out, err = cli("check")
    assert (code, out) == (0, "")
    assert err.strip().endswith("checked 0 stored blobs against 0 rows: 0 problems, 0 left")
    stray = tmp_path / "data" / "storage" / "blobs" / "sha256" / "ab" / ("ab" + "0" * 62)
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"stray")
    code, out, err = cli("check")
    assert code == 1
    assert out == f"bytes-without-row\tsha256:ab{'0' * 62}\t5 bytes no row accounts for\n"
    code, out, err = cli("check", "--repair")
    assert code == 0, err
    assert out.endswith("queued for garbage collection after a lease\trepaired\n")
    assert err.strip().endswith("1 problems, 0 left")
    assert ok(cli, "check") == ""


def test_retention_dry_run_then_run(cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGISTRY_AUTH_ENABLED", "false")

    async def push() -> None:
        app = create_app(load_settings(None, dict(os.environ)))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://r") as c:
            for tag in ("v1", "v2"):
                await push_image(c, "team/app", tag)
            r = await c.patch(
                "/api/v1/namespaces/team/policy", json={"retention": {"keep_last": 1}}
            )
            assert r.status_code == 200
        await app.state.registry.close()

    ok(cli, "migrate")
    anyio.run(push)
    code, out, err = cli("retention", "--dry-run")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "team/app\ttag\tv1"
    assert lines[1].startswith("team/app\tmanifest\tsha256:")
    assert "retention would delete 1 tags and 1 manifests in 1 repositories" in err
    code, out2, err = cli("retention", "--namespace", "team")
    assert (code, out2) == (0, out)
    assert "retention deleted 1 tags" in err
    assert ok(cli, "retention", "--dry-run") == ""


def test_usage_prints_namespaces_and_repositories(
    cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGISTRY_AUTH_ENABLED", "false")

    async def push() -> None:
        # (No access lines: the earlier command set up logging to this standard error.)
        app = create_app(load_settings(None, {**os.environ, "REGISTRY_HTTP_ACCESS_LOG": "0"}))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://r") as c:
            await push_image(c, "team/app", "v1", layers=[b"x" * 100])
        await app.state.registry.close()

    ok(cli, "migrate")
    anyio.run(push)
    code, out, err = cli("usage", "--bytes")
    assert code == 0, err
    header, row = out.splitlines()
    assert header == "NAMESPACE\tREPOSITORIES\tBYTES"
    name, repositories, size = row.split("\t")
    assert (name, repositories) == ("team", "1") and int(size) > 100
    assert err.startswith(f"stored {size}; 0 reclaimable now; 0 uploads in progress")
    code, out, err = cli("usage", "--namespace", "team", "--bytes")
    assert out.splitlines()[1] == f"team/app\t{size}\t0"
    assert err.startswith(f"team: {size} (no quota)")
    # As people read sizes, by default.
    readable = f"{int(size)} B" if int(size) < 1024 else f"{int(size) / 1024:.1f} KiB"
    code, out, err = cli("usage")
    assert out.splitlines() == ["NAMESPACE\tREPOSITORIES\tSIZE", f"team\t1\t{readable}"]
    assert err.startswith(f"stored {readable}; 0 B reclaimable now")
    code, out, err = cli("usage", "--namespace", "team")
    assert out.splitlines()[1] == f"team/app\t{readable}\t0 B"
