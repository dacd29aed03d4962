import os
from pathlib import Path

import pytest

from registry.auth.tokens import authority_from_settings
from registry.config import ConfigError, host_patterns, load_settings


def test_defaults_need_no_file() -> None:
    s = load_settings(None, {})
    assert s.http.port == 5000
    assert s.database_url.startswith("sqlite+aiosqlite:///")
    assert s.database_url.endswith("/data/registry.db")
    assert s.storage_root == (Path("data") / "storage").resolve()


def test_workers_default_to_the_cores_the_process_may_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings(None, {}).http.workers == len(os.sched_getaffinity(0))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {5})  # taskset -c 5
    assert load_settings(None, {}).http.workers == 1
    assert load_settings(None, {"REGISTRY_HTTP_WORKERS": "3"}).http.workers == 3


def test_environment_overrides_file(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    config.write_text(
        "http:\n  port: 6000\n  host: 127.0.0.1\ndatabase:\n  url: postgresql://u:p@db/r\n"
    )
    s = load_settings(config, {"REGISTRY_HTTP_PORT": "7000"})
    assert s.http.port == 7000
    assert s.http.host == "127.0.0.1"
    assert s.database_url == "postgresql+asyncpg://u:p@db/r"


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("", {"REGISTRY_HTTP_PORT": "abc"}, "config: http.port: expected an integer, got 'abc'"),
        ("http:\n  port: 70000\n", {}, "config: http.port: must be between 0 and 65535"),
        ("htp:\n  port: 1\n", {}, "config: htp: unknown key"),
        ("http:\n  prot: 1\n", {}, "config: http.prot: unknown key"),
        ("storage:\n  driver: tape\n", {}, "config: storage.driver: must be one of filesystem"),
        ("database:\n  echo: maybe\n", {}, "config: database.echo: expected true or false"),
        (
            "database:\n  url: mysql://x\n",
            {},
            "config: database.url: must be a sqlite:/// or postgresql://",
        ),
        ("- a\n- b\n", {}, "expected a mapping of keys at the top"),
        ("http: [\n", {}, "not valid YAML"),
        ("log_level: loud\n", {}, "config: log_level: must be one of"),
        ("auth:\n  key_algorithm: HS256\n", {}, "config: auth.key_algorithm: must be ES256"),
        ("", {"REGISTRY_AUTH_TOKEN_TTL_SECONDS": "0"}, "config: auth.token_ttl_seconds: must be"),
        ("", {"REGISTRY_AUTH_LOGIN_ATTEMPTS": "-1"}, "config: auth.login_attempts: must be"),
        ("", {"REGISTRY_AUTH_ENABLED": "sometimes"}, "config: auth.enabled: expected true"),
        ("log_format: xml\n", {}, "config: log_format: must be text or json, got 'xml'"),
        ("", {"REGISTRY_WEBHOOKS_TIMEOUT_SECONDS": "0"}, "config: webhooks.timeout_seconds"),
        ("", {"REGISTRY_WEBHOOKS_RETRY_HOURS": "-1"}, "config: webhooks.retry_hours: must be"),
        ("", {"REGISTRY_AUDIT_RETENTION_DAYS": "-2"}, "config: audit.retention_days: must be"),
        ("", {"REGISTRY_AUDIT_PULLS": "often"}, "config: audit.pulls: expected true"),
        ("", {"REGISTRY_HTTP_WORKERS": "-1"}, "config: http.workers: must be"),
    ],
)
def test_bad_values_name_the_key(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    config = tmp_path / "c.yml"
    config.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(config, env)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read it"):
        load_settings(tmp_path / "nope.yml", {})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a key", "is not an unencrypted PEM private key"),
        (None, "cannot read or create"),
    ],
)
def test_unusable_token_key(tmp_path: Path, content: bytes | None, message: str) -> None:
    key = tmp_path / "key.pem"
    if content is None:
        key = tmp_path / "missing-dir-is-a-file" / "key.pem"
        key.parent.write_text("a file, not a folder")
    else:
        key.write_bytes(content)
    settings = load_settings(None, {"REGISTRY_AUTH_KEY_FILE": str(key)})
    with pytest.raises(ConfigError) as info:
        authority_from_settings(settings)
    assert str(info.value).startswith("config: auth.key_file: ")
    assert message in str(info.value)


def test_mirror_upstreams_from_yaml_and_environment(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(
        "mirror:\n  enabled: true\n  upstreams:\n"
        "    - url: https://ghcr.io\n      prefix: ghcr.io\n"
        "    - url: https://registry-1.docker.io\n      username: u\n      password: p\n"
    )
    upstreams = load_settings(config, {}).mirror.upstreams
    assert [(u.url, u.prefix, u.username) for u in upstreams] == [
        ("https://ghcr.io", "ghcr.io", ""),
        ("https://registry-1.docker.io", "", "u"),
    ]
    # The environment wins, as a single URL or as a YAML/JSON list.
    env = {"REGISTRY_MIRROR_UPSTREAMS": "http://127.0.0.1:5001"}
    assert [u.url for u in load_settings(config, env).mirror.upstreams] == ["http://127.0.0.1:5001"]
    env = {"REGISTRY_MIRROR_UPSTREAMS": '[{"url": "http://a.test", "prefix": "a"}]'}
    assert load_settings(config, env).mirror.upstreams[0].prefix == "a"
    # Off by default, with Docker Hub as the upstream; content kept 7 days, no size limit.
    default = load_settings(None, {}).mirror
    assert not default.enabled
    assert default.upstreams[0].url == "https://registry-1.docker.io"
    assert (default.keep_days, default.max_bytes, default.negative_ttl_seconds) == (7, 0, 30)
    assert (default.upstreams[0].keep_days, default.upstreams[0].max_bytes) == (None, None)
    # An upstream's own limits.
    env = {"REGISTRY_MIRROR_UPSTREAMS": '[{"url": "http://a.test", "max_bytes": 1000}]'}
    assert load_settings(config, env).mirror.upstreams[0].max_bytes == 1000
    allowed = {"REGISTRY_MIRROR_ENABLED": "true", "REGISTRY_MIRROR_ALLOW_HOSTS": " *.Example.com,"}
    assert host_patterns(load_settings(None, allowed).mirror.allow_hosts) == ["*.example.com"]
    for bad in ("https://x.example.com", "x.example.com:443", "x y"):
        with pytest.raises(ConfigError, match="is not a host pattern"):
            load_settings(None, {**allowed, "REGISTRY_MIRROR_ALLOW_HOSTS": bad})
    with pytest.raises(ConfigError, match=r"mirror\.max_bytes: must be at least 0"):
        load_settings(None, {"REGISTRY_MIRROR_ENABLED": "true", "REGISTRY_MIRROR_MAX_BYTES": "-1"})


@pytest.mark.parametrize(
    ("upstreams", "message"),
    [
        ("ftp://x.test", "mirror.upstreams[0].url: expected an http(s) URL"),
        ('[{"url": "http://a.test", "prefix": "a/b"}]', "prefix: must be one repository name"),
        ('[{"url": "http://a.test"}, {"url": "http://b.test"}]', "empty is used twice"),
        ('[{"url": "http://a.test", "password": "p"}]', "password: given without a username"),
        ("[]", "mirror.upstreams: expected a non-empty list"),
        ('[{"url": "http://a.test", "colour": "red"}]', "mirror.upstreams[0].colour: unknown key"),
        ("[not: valid", "expected a YAML or JSON list"),
        ('[{"url": "http://a.test", "keep_days": -1}]', "[0].keep_days: must be at least 0"),
        ('[{"url": "http://a.test", "max_bytes": "lots"}]', "[0].max_bytes: expected an integer"),
    ],
)
def test_bad_mirror_upstreams(upstreams: str, message: str) -> None:
    env = {"REGISTRY_MIRROR_ENABLED": "true", "REGISTRY_MIRROR_UPSTREAMS": upstreams}
    with pytest.raises(ConfigError) as info:
        load_settings(None, env)
    assert message in str(info.value)
    assert str(info.value).startswith("config: mirror.upstreams")


def test_settings_from_secret_files(tmp_path: Path) -> None:
    secret = tmp_path / "admin_password"
    secret.write_text("from-a-file\n")
    env = {
        "REGISTRY_ADMIN_PASSWORD_FILE": str(secret),
        "REGISTRY_DATABASE_URL": "postgresql://registry@db:5432/registry",
        "REGISTRY_DATABASE_PASSWORD_FILE": str(secret),
    }
    settings = load_settings(None, env)
    assert settings.admin_password == "from-a-file"
    assert settings.database_url == "postgresql+asyncpg://registry:from-a-file@db:5432/registry"
    with pytest.raises(ConfigError, match="REGISTRY_ADMIN_PASSWORD_FILE: cannot read"):
        load_settings(None, {"REGISTRY_ADMIN_PASSWORD_FILE": str(tmp_path / "none")})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REGISTRY_STORAGE_ACCEL_REDIRECT": "_blobs"}, "must start and end with /"),
        (
            {
                "REGISTRY_STORAGE_ACCEL_REDIRECT": "/_blobs/",
                "REGISTRY_STORAGE_DRIVER": "s3",
                "REGISTRY_STORAGE_S3_BUCKET": "b",
            },
            "works with the filesystem store only",
        ),
        ({"REGISTRY_HTTP_TRUSTED_PROXIES": "10.0.0.0/8, nginx"}, "'nginx' is not an address"),
    ],
)
def test_bad_proxy_settings(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(None, env)
