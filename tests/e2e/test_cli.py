"""The `registry` command itself."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import urlopen

import pytest

from registry import __version__
from tests.conftest import s3_environment
from tests.peers.postgres import PostgresServer
from tests.peers.registry import REGISTRY
from tests.peers.s3 import MotoServer
from tests.peers.tools import free_port, launch, stop, unavailable


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [REGISTRY, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"registry {__version__}"


def test_bad_config_stops_with_one_line(tmp_path: Path) -> None:
    result = run("serve", env={"REGISTRY_HTTP_PORT": "eighty"}, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "registry: config: http.port: expected an integer, got 'eighty'\n"
    config = tmp_path / "c.yml"
    config.write_text("storage:\n  driver: floppy\n")
    result = run("serve", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "storage.driver" in result.stderr


def test_migrate_creates_the_database(tmp_path: Path) -> None:
    result = run("migrate", env={"REGISTRY_DATA_DIR": str(tmp_path / "d")})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "d" / "registry.db").exists()
    assert "database is at the latest schema" in result.stderr
    # Running it again is a no-op.
    assert run("migrate", env={"REGISTRY_DATA_DIR": str(tmp_path / "d")}).returncode == 0


def test_bad_token_key_stops_the_start_with_one_line(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\nnonsense\n-----END PRIVATE KEY-----\n")
    result = run(
        "serve",
        env={"REGISTRY_DATA_DIR": str(tmp_path / "d"), "REGISTRY_AUTH_KEY_FILE": str(key)},
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"registry: config: auth.key_file: {key} is not")
    assert result.stderr.count("\n") == 1


def test_missing_s3_bucket_stops_the_start_with_one_line(
    tmp_path: Path, s3_server: MotoServer
) -> None:
    env = {
        **s3_environment(s3_server, "no-such-bucket"),
        "REGISTRY_DATA_DIR": str(tmp_path / "d"),
    }
    result = run("serve", env=env)
    assert result.returncode == 2
    assert result.stderr == (
        "registry: storage.s3: bucket 'no-such-bucket' does not exist; "
        "check the bucket, endpoint_url and credentials\n"
    )


def test_gc_hold_and_release(tmp_path: Path) -> None:
    env = {"REGISTRY_DATA_DIR": str(tmp_path / "d")}
    held = run("gc", "hold", "--hours", "2", env=env)
    assert held.returncode == 0, held.stderr
    assert "garbage collection deletes nothing until" in held.stdout
    passed = run("gc", env=env)
    assert passed.returncode == 0 and "deleted 0 manifests, 0 blobs" in passed.stdout
    released = run("gc", "release", env=env)
    assert released.returncode == 0, released.stderr
    assert released.stdout.strip() == "garbage collection deletes again (no hold)"
    assert run("gc", "hold", "--hours", "lots", env=env).returncode == 2


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The error of a command that stopped as it should: exit code 2 and one line."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("registry: "), result.stderr
    return lines[0]


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A port whose listener accepts connections and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def test_a_database_that_cannot_be_used_stops_every_command_with_one_line(
    tmp_path: Path, postgres: PostgresServer, silent_listener: int
) -> None:
    base = postgres.url_for("postgres")  # the test account's, with its password
    parts = urlsplit(base)
    account, host = parts.netloc.rsplit("@", 1)
    user = account.split(":")[0]
    where = f"cannot connect to PostgreSQL at {host} as {user}"
    cases = {
        f"postgresql://{user}:wrong@{host}/postgres": (
            f"{where}: the server refused the password (the URL's, or database.password)"
        ),
        f"{base}_no_such_db": (
            f'{where}: database "postgres_no_such_db" does not exist; create it '
            "(createdb postgres_no_such_db)"
        ),
        f"postgresql://u:p@127.0.0.1:{free_port()}/db": "nothing accepts connections there",
        "postgresql://u:p@no-such-host.invalid/db": "the host name does not resolve",
        f"postgresql://u:p@127.0.0.1:{silent_listener}/db": (
            "no answer within 1 s (database.timeout_seconds)"
        ),
    }
    for url, cause in cases.items():
        env = {
            "REGISTRY_DATA_DIR": str(tmp_path / "d"),
            "REGISTRY_DATABASE_URL": url,
            "REGISTRY_DATABASE_TIMEOUT_SECONDS": "1",
            "REGISTRY_HTTP_PORT": str(free_port()),
        }
        # Every command checks the same way: all of them on the first case.
        commands = [["serve"], ["migrate"], ["user", "list"], ["gc", "--dry-run"]]
        for command in commands if url == next(iter(cases)) else [["serve"]]:
            line = one_line(run(*command, env=env))
            assert line.startswith("registry: database.url (REGISTRY_DATABASE_URL): "), line
            assert cause in line, (command, url, line)
            assert "wrong" not in line and ":p@" not in line  # no password, ever


def test_a_data_folder_or_sqlite_folder_that_cannot_be_used_stops_with_one_line(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "missing" / "registry.db"
    line = one_line(
        run("migrate", env={"REGISTRY_DATABASE_URL": f"sqlite:///{missing}"}, cwd=tmp_path)
    )
    assert line == (
        f"registry: database.url (REGISTRY_DATABASE_URL): the SQLite file {missing} is in "
        f"{missing.parent}, which does not exist: create the folder"
    )
    afile = tmp_path / "afile"
    afile.write_text("")
    line = one_line(run("migrate", env={"REGISTRY_DATA_DIR": str(afile / "data")}))
    assert line == (
        f"registry: data_dir (REGISTRY_DATA_DIR) {afile / 'data'}: cannot create it "
        "(Not a directory)"
    )
    if os.geteuid() != 0:
        unavailable("a read-only mount needs root (CI runs as root)")
    frozen = tmp_path / "frozen"
    frozen.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(frozen)], check=True)
    try:
        line = one_line(run("user", "list", env={"REGISTRY_DATA_DIR": str(frozen)}))
        assert line == (
            f"registry: data_dir (REGISTRY_DATA_DIR) {frozen}: this user (root) may not write in it"
        )
        url = f"sqlite:///{frozen}/registry.db"
        env = {"REGISTRY_DATA_DIR": str(tmp_path / "d"), "REGISTRY_DATABASE_URL": url}
        line = one_line(run("migrate", env=env))
        assert line.endswith(f"is in {frozen}, where this user (root) may not write")
    finally:
        subprocess.run(["umount", "-l", str(frozen)], check=False)


def test_a_port_in_use_stops_the_start_before_it_claims_to_listen(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        env = {
            "REGISTRY_DATA_DIR": str(tmp_path / "d"),
            "REGISTRY_HTTP_HOST": "127.0.0.1",
            "REGISTRY_HTTP_PORT": str(port),
        }
        result = run("serve", env=env)
    assert one_line(result) == (
        f"registry: http.port (REGISTRY_HTTP_PORT): cannot listen on 127.0.0.1:{port}: "
        "another program listens there; stop it, or choose another port"
    )
    assert "listening" not in result.stdout + result.stderr
    env["REGISTRY_HTTP_HOST"] = "192.0.2.1"  # TEST-NET-1: no host has it
    assert one_line(run("serve", env=env)) == (
        f"registry: http.host (REGISTRY_HTTP_HOST): cannot listen on 192.0.2.1:{port}: "
        "192.0.2.1 is not an address of this host"
    )


def test_a_misspelt_variable_is_named_with_the_closest_setting(tmp_path: Path) -> None:
    env = {
        "REGISTRY_DATA_DIR": str(tmp_path / "d"),
        "REGISTRY_HTTP_PROT": "5001",
        "REGISTRY_MIRROR_ENABLE": "true",
        "REGISTRY_WHATEVER": "1",
        # Not settings, and not warned about: Kubernetes' service links for a Service
        # named `registry`, and the host name `make secrets` reads.
        "REGISTRY_PORT": "tcp://10.0.0.1:5000",
        "REGISTRY_PORT_5000_TCP_ADDR": "10.0.0.1",
        "REGISTRY_SERVICE_HOST": "10.0.0.1",
        "REGISTRY_HOSTNAME": "registry.example.com",
    }
    result = run("migrate", env=env)
    assert result.returncode == 0, result.stderr
    warnings = [
        line.split(" registry: ", 1)[1]
        for line in result.stderr.splitlines()
        if " WARNING " in line
    ]
    assert warnings == [
        "REGISTRY_HTTP_PROT names no setting and is ignored; did you mean "
        "REGISTRY_HTTP_PORT (http.port)?",
        "REGISTRY_MIRROR_ENABLE names no setting and is ignored; did you mean "
        "REGISTRY_MIRROR_ENABLED (mirror.enabled)?",
        "REGISTRY_WHATEVER names no setting and is ignored",
    ]


def test_the_data_folder_is_made_for_its_owner_only(tmp_path: Path) -> None:
    data = tmp_path / "d"
    result = run("migrate", env={"REGISTRY_DATA_DIR": str(data)})
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert "open to other users" not in result.stderr
    data.chmod(0o755)  # made by an older release, or by hand
    result = run("migrate", env={"REGISTRY_DATA_DIR": str(data)})
    assert result.returncode == 0
    assert (
        f"data_dir (REGISTRY_DATA_DIR) {data} is open to other users of this host (mode 755)"
    ) in result.stderr
    assert f"run `chmod 700 {data}`" in result.stderr


def test_serve_help_lists_the_main_settings_and_their_variables() -> None:
    result = run("serve", "--help")
    assert result.returncode == 0
    for flag in ("--host HOST", "--port PORT", "--data-dir DATA_DIR", "--config CONFIG"):
        assert flag in result.stdout
    lines = result.stdout.splitlines()
    assert any(line.split() == ["http.port", "REGISTRY_HTTP_PORT", "5000"] for line in lines)
    assert any(line.split()[:2] == ["database.url", "REGISTRY_DATABASE_URL"] for line in lines)
    assert "registry config show" in result.stdout


def test_serve_takes_the_host_port_and_data_folder_as_flags(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "flagged"
    log = tmp_path / "serve.log"
    # The flags win over the variables; the workers (two) serve with them too.
    env = {
        **os.environ,
        "REGISTRY_HTTP_PORT": "1",
        "REGISTRY_DATA_DIR": str(tmp_path / "not-this"),
        "REGISTRY_HTTP_WORKERS": "2",
        "REGISTRY_AUTH_ENABLED": "false",
    }
    args = [REGISTRY, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data)]
    process = launch(args, port, log, "registry", env)
    try:
        with urlopen(f"http://127.0.0.1:{port}/v2/", timeout=10) as answer:
            assert answer.status == 200
        assert (data / "registry.db").exists()
        assert not (tmp_path / "not-this").exists()
    finally:
        stop(process)
    assert f"listening on 127.0.0.1:{port} (data in {data})" in log.read_text()


def test_config_show_says_where_each_value_came_from_and_masks_secrets(
    tmp_path: Path,
) -> None:
    config = tmp_path / "registry.yml"
    config.write_text(
        "http:\n  port: 6000\nmirror:\n  upstreams:\n"
        "    - url: https://bot:url-secret@ghcr.io:8443\n      prefix: ghcr.io\n"
        "      username: bot\n      password: upstream-secret\n"
    )
    (tmp_path / "pw").write_text("file-secret\n")
    env = {
        "REGISTRY_DATABASE_URL": "postgresql://registry:url-password@db:5432/registry",
        "REGISTRY_ADMIN_PASSWORD_FILE": str(tmp_path / "pw"),
        "REGISTRY_METRICS_TOKEN": "metrics-secret",
        "REGISTRY_HTTP_WORKERS": "3",
        "REGISTRY_AUTH_LDAP_BIND_PASSWORD": "bind-secret",
        "REGISTRY_AUTH_OIDC_CLIENT_SECRET": "client-secret",
    }
    data = tmp_path / "d"
    result = run("config", "show", "--config", str(config), "--data-dir", str(data), env=env)
    assert result.returncode == 0, result.stderr
    shown = {
        line.split(" = ", 1)[0]: [part.strip() for part in line.split(" = ", 1)[1].split(" # ")]
        for line in result.stdout.splitlines()
    }
    assert shown["data_dir"] == [str(data), "command line --data-dir"]
    assert shown["http.port"] == ["6000", f"file {config}"]
    assert shown["http.workers"] == ["3", "environment REGISTRY_HTTP_WORKERS"]
    assert shown["http.host"] == ["0.0.0.0", "default"]
    assert shown["admin_password"] == ["********", "environment REGISTRY_ADMIN_PASSWORD_FILE"]
    assert shown["metrics.token"] == ["********", "environment REGISTRY_METRICS_TOKEN"]
    assert shown["database.url"][0] == "postgresql://registry:***@db:5432/registry"
    assert shown["mirror.upstreams"][0] == (
        "[{url: https://bot:********@ghcr.io:8443, prefix: ghcr.io, username: bot, "
        "password: ********}]"
    )
    assert shown["auth.ldap.bind_password"][0] == "********"
    assert shown["auth.oidc.client_secret"][0] == "********"
    for secret in (
        "url-secret",
        "upstream-secret",
        "file-secret",
        "metrics-secret",
        "bind-secret",
        "client-secret",
    ):
        assert secret not in result.stdout
    assert "url-password" not in result.stdout
    # It opens nothing: no data folder, no database.
    assert not data.exists()


def test_output_whose_reader_has_gone_is_no_traceback() -> None:
    # `true` reads nothing and is gone before the command writes its first line.
    shell = f"{REGISTRY} config show | true; echo ${{PIPESTATUS[0]}} >&2"
    result = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=60)
    assert result.stderr == "1\n"
