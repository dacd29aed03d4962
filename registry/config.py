"""Settings: embedded defaults, overlaid by a YAML file, overlaid by REGISTRY_* variables.

Every key has a default, so the registry starts with no file at all. A YAML key `a.b` is
overridden by the environment variable `REGISTRY_A_B`. A bad value raises ConfigError
with one line that names the key and says what is wrong.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import yaml
from sqlalchemy.engine import make_url

from registry.names import NAME_COMPONENT

if TYPE_CHECKING:
    from registry.signatures import TrustedKey


class ConfigError(Exception):
    """A configuration value is missing, unknown or malformed."""


@dataclass(frozen=True)
class HttpSettings:
    host: str = "0.0.0.0"
    port: int = 5000
    # uvicorn worker processes; 0: one per CPU core this process may run on (its
    # affinity, as a container's cpuset sets it), as Go's GOMAXPROCS sizes Distribution.
    workers: int = 0
    # Addresses or networks (comma-separated) of proxies whose X-Forwarded-Proto, -Host and
    # -For are believed: they make the URLs in Location headers and token challenges.
    trusted_proxies: str = "127.0.0.1,::1"
    # Bounds on every connection (registry/server.py): a request head must arrive within
    # header_timeout_seconds and hold at most header_bytes; a body must come at
    # body_min_rate bytes/s or more over each body_timeout_seconds; a response the client
    # does not read for send_timeout_seconds, and a connection idle between requests for
    # keepalive_seconds, are closed.
    header_timeout_seconds: int = 20
    header_bytes: int = 32 * 1024
    body_timeout_seconds: int = 60
    body_min_rate: int = 1024
    send_timeout_seconds: int = 60
    keepalive_seconds: int = 30
    # On SIGTERM a worker stops accepting connections and gives the requests in flight
    # this long to finish, then ends them: a client that never finishes its request
    # cannot hold a stop (or a rolling update) for ever. Below the orchestrator's grace
    # period (Docker's 10 s by default: docker-compose.yml sets 30 s).
    drain_seconds: int = 20
    # One line per request (method, route, status, bytes, duration, user, request ID).
    access_log: bool = True


@dataclass(frozen=True)
class DatabaseSettings:
    # Empty means SQLite in the data folder.
    url: str = ""
    # Replaces the password in `url`, so that it can come from a secret file
    # (REGISTRY_DATABASE_PASSWORD_FILE).
    password: str = ""
    pool_size: int = 10
    # PostgreSQL: seconds to connect or wait for a pooled connection; statements get
    # three times as long. Past that, 503.
    timeout_seconds: int = 10
    echo: bool = False


@dataclass(frozen=True)
class S3Settings:
    bucket: str = ""
    # Keys start with this (e.g. `registry/`); empty means the bucket's top.
    prefix: str = ""
    region: str = "us-east-1"
    # For MinIO, Ceph or a test server; empty means AWS.
    endpoint_url: str = ""
    # auto, virtual or path (MinIO usually wants path).
    addressing_style: str = "auto"
    # Empty means boto3's usual chain: environment, profile, instance role.
    access_key: str = ""
    secret_key: str = ""
    # Blob GETs answer 307 to a presigned URL, so the bytes come from S3 directly.
    redirect: bool = True
    presign_expiry_seconds: int = 1200
    # Worker threads (and HTTP connections) for S3 calls, per process.
    pool_size: int = 16
    # Seconds to connect, and to wait for the next bytes of an answer, per attempt; a
    # call is tried this many times before the client gets 503.
    timeout_seconds: int = 20
    max_attempts: int = 3
    # Uploads are kept in S3 as segments of this size, copied together at commit.
    part_size: int = 16 * 1024 * 1024
    # S3's limits; settings only so that tests can reach them with small data.
    max_parts: int = 10_000
    max_copy_bytes: int = 5 * 1024**3


@dataclass(frozen=True)
class StorageSettings:
    driver: str = "filesystem"
    # Empty means `<data_dir>/storage`.
    root: str = ""
    # Behind nginx: blob GETs answer with X-Accel-Redirect to this internal location (say
    # `/_blobs/`, an alias of `<root>/blobs/`), and nginx sends the file. Filesystem only.
    accel_redirect: str = ""
    s3: S3Settings = field(default_factory=S3Settings)


@dataclass(frozen=True)
class LdapSettings:
    # ldap://host:389 or ldaps://host:636; empty: no LDAP logins.
    url: str = ""
    # Upgrade ldap:// with StartTLS before anything is sent.
    start_tls: bool = False
    # CA certificates (PEM) that sign the directory's certificate; empty: the system's.
    ca_file: str = ""
    verify: bool = True
    # The service account that searches (REGISTRY_AUTH_LDAP_BIND_PASSWORD_FILE for the
    # password); empty: an anonymous search.
    bind_dn: str = ""
    bind_password: str = ""
    user_base: str = ""
    # {username} is replaced by the name given, escaped. Leave disabled accounts out here,
    # e.g. (&(objectClass=inetOrgPerson)(uid={username})(!(pwdAccountLockedTime=*))).
    user_filter: str = "(&(objectClass=inetOrgPerson)(uid={username}))"
    username_attribute: str = "uid"
    # Groups: the values of this attribute of the user's entry (memberOf), or, when
    # empty, the entries under group_base that group_filter finds ({dn}: the user's DN).
    group_attribute: str = ""
    group_base: str = ""
    group_filter: str = "(&(objectClass=groupOfNames)(member={dn}))"
    timeout_seconds: float = 5
    pool_size: int = 4


@dataclass(frozen=True)
class GroupRoleSettings:
    # ldap (the group's DN) or oidc (a value of the groups claim).
    source: str = ""
    group: str = ""
    # guest, developer, maintainer or owner of `namespace`; or admin, with no namespace.
    role: str = ""
    namespace: str = ""


@dataclass(frozen=True)
class OidcSettings:
    # The provider's issuer URL (its /.well-known/openid-configuration is read); empty:
    # no OIDC logins.
    issuer: str = ""
    client_id: str = ""
    client_secret: str = ""
    # The button on the login page: "Log in with <display_name>".
    display_name: str = "single sign-on"
    scopes: str = "openid profile email groups"
    # The claim that names the account here; its value must be a valid user name.
    username_claim: str = "preferred_username"
    groups_claim: str = "groups"
    # This registry's address as the browser sees it (https://registry.example.com), for
    # the redirect URI <external_url>/ui/oidc/callback; empty: from the request.
    external_url: str = ""
    timeout_seconds: float = 10


@dataclass(frozen=True)
class AuthSettings:
    # Off makes an open registry, as Distribution is by default.
    enabled: bool = True
    # The token audience (`service` in challenges) and issuer.
    service: str = "registry"
    issuer: str = "registry"
    # The token endpoint's URL in challenges; empty means this server's own /token.
    realm: str = ""
    # PEM private key (EC P-256 or RSA) that signs tokens; empty means
    # `<data_dir>/token.key`, created on first start. Replicas must share one key.
    key_file: str = ""
    key_algorithm: str = "ES256"
    token_ttl_seconds: int = 300
    refresh_ttl_seconds: int = 30 * 24 * 3600
    clock_skew_seconds: int = 60
    # Accept HTTP Basic credentials directly on /v2/ routes, for simple clients.
    basic: bool = True
    login_attempts: int = 5
    login_window_seconds: int = 300
    # How long a login to the web console lasts.
    console_session_hours: float = 12
    # Who may log in with a password kept here: all local users, or admins only (when
    # people log in through LDAP or OIDC, local accounts stay for break-glass).
    local_login: str = "all"
    ldap: LdapSettings = field(default_factory=LdapSettings)
    oidc: OidcSettings = field(default_factory=OidcSettings)
    # Roles that members of a directory's or provider's groups hold, rewritten into the
    # database at every start (the API adds more).
    group_roles: tuple[GroupRoleSettings, ...] = ()


@dataclass(frozen=True)
class UpstreamSettings:
    url: str = "https://registry-1.docker.io"
    # Repositories whose first name component is this (say `ghcr.io`, for
    # `ghcr.io/org/app`) come from this upstream, with the component removed. Empty: every
    # other repository (Docker Hub's names, as Docker daemons ask a mirror for them).
    prefix: str = ""
    # Empty means anonymous (the token dance without credentials).
    username: str = ""
    password: str = ""
    # This upstream's own expiry and size limit; unset: mirror.keep_days and max_bytes.
    keep_days: float | None = None
    max_bytes: int | None = None
    # Public keys (PEM files, comma-separated): serve and cache from this upstream only
    # images one of them signed (cosign), and the signatures and referrers themselves.
    signed_by: str = ""


@dataclass(frozen=True)
class MirrorSettings:
    enabled: bool = False
    upstreams: tuple[UpstreamSettings, ...] = (UpstreamSettings(),)
    # A tag is served from the cache this long before it is checked upstream again.
    tag_ttl_seconds: int = 300
    # When the upstream is down, errs or rate-limits, serve what the cache has.
    offline_fallback: bool = True
    # Refuse pushes everywhere. Otherwise namespaces that exist here (`registry namespace
    # add`, personal namespaces) are hosted, and every other name is mirrored.
    mirror_only: bool = True
    # Anyone may pull mirrored repositories, anonymous callers included. Otherwise pulling
    # them needs an account (any user or robot).
    open: bool = False
    # Seconds to wait for an upstream to connect or to send the next bytes.
    timeout_seconds: int = 30
    # Each upstream's cached manifests (with their tags, and then the blobs nothing else
    # references) go once no one has pulled them for this long; 0: kept forever.
    keep_days: float = 7
    # Each upstream's cache is kept under this many bytes by evicting the least recently
    # pulled manifests first; 0: no limit.
    max_bytes: int = 0
    # An upstream's 404 (no such tag, manifest or blob) is remembered this long, so a
    # storm of pulls for something missing asks the upstream once; 0: not remembered.
    negative_ttl_seconds: float = 30
    # Host patterns (`*.example.com, registry.k8s.io`) a client may name, by containerd's
    # `?ns=` or as the first name component, without an entry in `upstreams`: each host
    # is mirrored over HTTPS, anonymously, under itself as the prefix. Empty: only the
    # upstreams listed. Any host matched can be made to receive requests: see README.
    allow_hosts: str = ""


@dataclass(frozen=True)
class LimitsSettings:
    """Bounds on what one request may ask of the registry; past each, a clear 4xx."""

    # Arrays and objects nested deeper than this in a manifest or an API body.
    json_depth: int = 64
    # Descriptors in one manifest (its config and layers, or an index's manifests).
    manifest_descriptors: int = 10_000
    # Bytes of a request's query string.
    query_bytes: int = 8192
    # Upload sessions one account (one client address, with auth off) may hold open.
    upload_sessions: int = 1000


@dataclass(frozen=True)
class GcSettings:
    # A blob is kept at least this long after an upload, a mount, or a push's check that
    # it is there (a HEAD), referenced or not: a push has this long to PUT the manifest
    # that uses it. Renewals last twice as long, so one write covers a whole lease.
    blob_lease_seconds: float = 3600
    # How often each `registry serve` process runs a collection pass; 0: never (run
    # `registry gc` from cron instead).
    interval_seconds: float = 60
    # Upload sessions idle for longer are ended by the same worker.
    upload_ttl_hours: float = 24
    # Delete manifests no tag has pointed at for this long (0: keep them), unless an
    # index lists them or a kept referrer has them as its subject.
    untagged_hours: float = 0
    # How often each process applies the namespaces' retention policies; 0: only
    # `registry retention` does.
    retention_interval_seconds: float = 3600


@dataclass(frozen=True)
class WebhookSettings:
    # How often each `registry serve` process looks for events to deliver; 0: never
    # (no process delivers webhooks).
    poll_seconds: float = 1.0
    # A delivery is retried, with exponential backoff and jitter from backoff_seconds up
    # to max_backoff_seconds, for this long after its event; then it is marked failed.
    retry_hours: float = 24
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 600
    # One attempt's limit: connecting, sending and reading the answer.
    timeout_seconds: float = 10
    # Namespace owners' endpoints may not be loopback, private or link-local addresses
    # (the registry's own network, a cloud's metadata service) unless this is on.
    # Admins' global endpoints may be anywhere.
    allow_private_targets: bool = False


@dataclass(frozen=True)
class ReplicationSettings:
    # Namespace owners' remotes may not be loopback, private or link-local addresses
    # (the registry's own network) unless this is on; admins' remotes may be anywhere.
    allow_private_targets: bool = False
    # One request to a remote: connecting, and each wait for its next bytes.
    timeout_seconds: float = 30
    # How often each `registry serve` process looks for replication work (due schedules,
    # queued items); 0: never (this process copies nothing). Pushes wake the worker of
    # the process that took them at once.
    poll_seconds: float = 1.0
    # Items (an image with its tag, or a deletion) one process copies at once.
    concurrency: int = 4
    # A blob goes to a remote in PATCH requests of this size; an interrupted copy resumes
    # from the last offset the remote acknowledged, so at most this much is sent again.
    chunk_bytes: int = 16 * 1024 * 1024
    # An item that fails is tried again after backoff_seconds, doubling up to
    # max_backoff_seconds, this many times in all; then it is failed, with its reason.
    attempts: int = 5
    backoff_seconds: float = 2.0
    max_backoff_seconds: float = 300
    # A claimed item is this process's for this long, renewed while it copies; a process
    # that dies leaves it to another once this has passed.
    lease_seconds: float = 60


@dataclass(frozen=True)
class MetricsSettings:
    # Who may read /metrics: admin (an admin's credentials, as the API), token (a
    # Bearer token equal to `token`, for Prometheus's `authorization`), or open (anyone:
    # when only an internal network reaches the replicas; nginx does not pass /metrics).
    access: str = "admin"
    token: str = ""


@dataclass(frozen=True)
class AuditSettings:
    # Audit rows (and delivered webhook events) older than this are deleted; 0: never.
    retention_days: float = 90
    # A row for every manifest pull, not only counts (pull webhooks get events anyway).
    pulls: bool = False


@dataclass(frozen=True)
class Settings:
    data_dir: str = "./data"
    log_level: str = "info"
    # text, or json: one JSON object per line.
    log_format: str = "text"
    manifest_max_bytes: int = 4 * 1024 * 1024
    # Accept manifests whose blobs, and indexes whose child manifests, are not here (as
    # Quay's sparse indexes): pulls of what is missing fail later, at the client.
    sparse_manifests: bool = False
    # The first admin's password (REGISTRY_ADMIN_PASSWORD); empty means generate one.
    admin_password: str = ""
    # The key that seals secrets kept in the database (replication remotes' passwords,
    # identity providers' refresh tokens); empty means `<data_dir>/sealing.key`, made on
    # the first start. Replicas must share it, as they share the token key.
    sealing_key_file: str = ""
    http: HttpSettings = field(default_factory=HttpSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    mirror: MirrorSettings = field(default_factory=MirrorSettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    gc: GcSettings = field(default_factory=GcSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    replication: ReplicationSettings = field(default_factory=ReplicationSettings)

    @property
    def database_url(self) -> str:
        url = self.database.url or f"sqlite:///{Path(self.data_dir).resolve() / 'registry.db'}"
        # Accept the URLs operators know and pick the async driver for them.
        for plain, driver in (
            ("sqlite://", "sqlite+aiosqlite://"),
            ("postgresql://", "postgresql+asyncpg://"),
            ("postgres://", "postgresql+asyncpg://"),
        ):
            if url.startswith(plain):
                url = driver + url[len(plain) :]
                break
        if self.database.password:
            url = (
                make_url(url)
                .set(password=self.database.password)
                .render_as_string(hide_password=False)
            )
        return url

    @property
    def token_key_path(self) -> Path:
        return Path(self.auth.key_file or Path(self.data_dir) / "token.key").resolve()

    @property
    def sealing_key_path(self) -> Path:
        return Path(self.sealing_key_file or Path(self.data_dir) / "sealing.key").resolve()

    @property
    def storage_root(self) -> Path:
        return Path(self.storage.root or Path(self.data_dir) / "storage").resolve()


_LOG_LEVELS = {"critical", "error", "warning", "info", "debug"}
_DRIVERS = {"filesystem", "s3"}


def load_settings(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Build validated settings from an optional YAML file and the environment."""
    environ = os.environ if environ is None else environ
    raw = _read_file(config_file(path, environ))
    settings: Settings = _build(Settings, raw, environ, prefix="")
    if settings.http.workers == 0:
        http = dataclasses.replace(settings.http, workers=usable_cores())
        settings = dataclasses.replace(settings, http=http)
    _validate(settings)
    return settings


def config_file(
    path: str | os.PathLike[str] | None, environ: Mapping[str, str]
) -> str | os.PathLike[str] | None:
    """The settings file: the one given, or REGISTRY_CONFIG's, or none."""
    return path or environ.get("REGISTRY_CONFIG") or None


def _read_file(path: str | os.PathLike[str] | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise ConfigError(f"config file {path}: not valid YAML{where}: {problem}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path}: expected a mapping of keys at the top")
    return loaded


def sources(path: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> dict[str, str]:
    """Where each setting's value comes from, as load_settings reads them: the
    environment (a variable, or its _FILE), the file, or the default."""
    path = config_file(path, environ)
    raw = _read_file(path)
    found = {}
    for key in keys():
        variable = env_name(key)
        section: Any = raw
        for part in key.split(".")[:-1]:
            section = section.get(part, {}) if isinstance(section, dict) else {}
        if variable in environ:
            found[key] = f"environment {variable}"
        elif variable + "_FILE" in environ:
            found[key] = f"environment {variable}_FILE"
        elif isinstance(section, dict) and key.rpartition(".")[2] in section:
            found[key] = f"file {path}"
        else:
            found[key] = "default"
    return found


def value_of(settings: Settings, key: str) -> Any:
    """A setting's value by its key (`http.port`)."""
    value: Any = settings
    for part in key.split("."):
        value = getattr(value, part)
    return value


def env_name(key: str) -> str:
    """The environment variable of a setting: `http.port` is REGISTRY_HTTP_PORT."""
    return "REGISTRY_" + key.upper().replace(".", "_")


def keys(cls: type = Settings, prefix: str = "") -> list[str]:
    """Every setting's key, `data_dir` to `metrics.token`, in declaration order."""
    hints = typing.get_type_hints(cls)
    found: list[str] = []
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            found += keys(kind, f"{prefix}{f.name}.")
        else:
            found.append(prefix + f.name)
    return found


# REGISTRY_* variables that are not settings but are ours or expected: the config file,
# the host name `make secrets` and docker-compose.yml read, the test suite's, and those
# Kubernetes sets in every pod of a namespace with a Service named `registry`.
_OTHER_VARIABLES = re.compile(
    r"REGISTRY_(CONFIG|HOSTNAME|TEST_\w+|SERVICE_HOST|SERVICE_PORT\w*|PORT(_\d+_\w+)?)"
)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning for each REGISTRY_* variable that names no setting, with the closest
    one: a misspelt variable is otherwise silently ignored."""
    known = {env_name(key): key for key in keys()}
    known.update({f"{name}_FILE": key for name, key in known.items()})
    warnings = []
    for name in sorted(environ):
        if not name.startswith("REGISTRY_") or name in known or _OTHER_VARIABLES.fullmatch(name):
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]} ({known[close[0]]})?" if close else ""
        warnings.append(f"{name} names no setting and is ignored{hint}")
    return warnings


def usable_cores() -> int:
    """The CPU cores this process may run on, at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _build(cls: type, raw: Any, environ: Mapping[str, str], prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"config: {prefix.rstrip('.')}: expected a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in names:
            raise ConfigError(f"config: {prefix}{key}: unknown key")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        kind = hints[f.name]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            values[f.name] = _build(kind, raw.get(f.name, {}), environ, key + ".")
            continue
        variable = env_name(key)
        if variable + "_FILE" in environ and variable not in environ:
            # Docker and compose secrets arrive as files: REGISTRY_X_FILE=/run/secrets/x.
            environ = {**environ, variable: _read_secret(variable + "_FILE", environ)}
        item = _item_type(kind)
        if item is not None:
            if variable in environ:
                values[f.name] = _build_list(item, _list_from_env(key, environ[variable]), key)
            elif f.name in raw:
                values[f.name] = _build_list(item, raw[f.name], key)
            continue
        if variable in environ:
            values[f.name] = _coerce(key, kind, environ[variable])
        elif f.name in raw:
            values[f.name] = _coerce(key, kind, raw[f.name])
    return cls(**values)


def _read_secret(name: str, environ: Mapping[str, str]) -> str:
    path = environ[name]
    try:
        return Path(path).read_text().rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"config: {name}: cannot read {path} ({exc.strerror})") from exc


def _item_type(kind: Any) -> type | None:
    """The settings class of a `tuple[X, ...]` field, or None for a plain field."""
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        if dataclasses.is_dataclass(item):
            return item  # type: ignore[return-value]
    return None


def _list_from_env(key: str, text: str) -> Any:
    """A list from one variable: YAML or JSON (`[{url: ..., prefix: ...}]`), or a bare
    URL for a single entry."""
    if "://" in text and not text.lstrip().startswith(("[", "{", "-")):
        return [{"url": text.strip()}]
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"config: {key}: expected a YAML or JSON list") from None


def _build_list(item: type, raw: Any, key: str) -> tuple[Any, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"config: {key}: expected a non-empty list of mappings")
    empty: Mapping[str, str] = {}
    return tuple(_build(item, entry, empty, f"{key}[{i}].") for i, entry in enumerate(raw))


def _coerce(key: str, kind: Any, value: Any) -> Any:
    if isinstance(kind, types.UnionType):
        kind = next(t for t in typing.get_args(kind) if t is not type(None))
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in {"1", "true", "yes", "on"}:
            return True
        if text in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"config: {key}: expected true or false, got {value!r}")
    if kind is int or kind is float:
        what = "an integer" if kind is int else "a number"
        if isinstance(value, bool):
            raise ConfigError(f"config: {key}: expected {what}, got {value!r}")
        try:
            number = kind(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config: {key}: expected {what}, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"config: {key}: expected a finite number, got {value!r}")
        return number
    if isinstance(value, dict | list):
        raise ConfigError(f"config: {key}: expected a string, got a {type(value).__name__}")
    return str(value)


def _validate(s: Settings) -> None:
    if not 0 <= s.http.port <= 65535:
        raise ConfigError(f"config: http.port: must be between 0 and 65535, got {s.http.port}")
    _at_least(
        "http",
        s.http,
        workers=1,
        header_timeout_seconds=1,
        header_bytes=1024,
        body_timeout_seconds=1,
        body_min_rate=0,
        send_timeout_seconds=1,
        keepalive_seconds=1,
        drain_seconds=0,
    )
    if s.log_level not in _LOG_LEVELS:
        raise ConfigError(
            f"config: log_level: must be one of {', '.join(sorted(_LOG_LEVELS))}, "
            f"got {s.log_level!r}"
        )
    if s.log_format not in {"text", "json"}:
        raise ConfigError(f"config: log_format: must be text or json, got {s.log_format!r}")
    if s.storage.driver not in _DRIVERS:
        raise ConfigError(
            f"config: storage.driver: must be one of {', '.join(sorted(_DRIVERS))}, "
            f"got {s.storage.driver!r}"
        )
    if s.storage.driver == "s3":
        _validate_s3(s.storage.s3)
    accel = s.storage.accel_redirect
    if accel and not (accel.startswith("/") and accel.endswith("/")):
        raise ConfigError(
            f"config: storage.accel_redirect: must start and end with /, got {accel!r}"
        )
    if accel and s.storage.driver != "filesystem":
        raise ConfigError(
            "config: storage.accel_redirect: works with the filesystem store only "
            "(S3 blobs are redirected to presigned URLs)"
        )
    trusted_networks(s.http.trusted_proxies)
    if s.manifest_max_bytes < 1024:
        raise ConfigError(
            f"config: manifest_max_bytes: must be at least 1024, got {s.manifest_max_bytes}"
        )
    _at_least("database", s.database, pool_size=1, timeout_seconds=1)
    if s.auth.key_algorithm not in {"ES256", "RS256"}:
        raise ConfigError(
            f"config: auth.key_algorithm: must be ES256 or RS256, got {s.auth.key_algorithm!r}"
        )
    _at_least(
        "limits",
        s.limits,
        json_depth=8,
        manifest_descriptors=1,
        query_bytes=1024,
        upload_sessions=1,
    )
    _at_least(
        "gc",
        s.gc,
        blob_lease_seconds=0.1,
        interval_seconds=0,
        upload_ttl_hours=0.0001,
        untagged_hours=0,
    )
    _at_least("auth", s.auth, token_ttl_seconds=1, refresh_ttl_seconds=1, login_attempts=1)
    _validate_sources(s.auth)
    _at_least(
        "replication",
        s.replication,
        timeout_seconds=0.1,
        poll_seconds=0,
        concurrency=1,
        chunk_bytes=1024,
        attempts=1,
        backoff_seconds=0.01,
        max_backoff_seconds=0.01,
        lease_seconds=1,
    )
    _at_least(
        "webhooks",
        s.webhooks,
        poll_seconds=0,
        retry_hours=0,
        backoff_seconds=0.01,
        max_backoff_seconds=0.01,
        timeout_seconds=0.1,
    )
    _at_least("audit", s.audit, retention_days=0)
    _at_least("replication", s.replication, timeout_seconds=0.1)
    if s.metrics.access not in {"admin", "token", "open"}:
        raise ConfigError(
            f"config: metrics.access: must be admin, token or open, got {s.metrics.access!r}"
        )
    if s.metrics.access == "token" and len(s.metrics.token) < 16:
        raise ConfigError(
            "config: metrics.token: metrics.access is token, so set a token of at least 16 "
            "characters (REGISTRY_METRICS_TOKEN or REGISTRY_METRICS_TOKEN_FILE)"
        )
    if s.mirror.enabled:
        _validate_mirror(s.mirror)
    url = s.database_url
    if not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        raise ConfigError(
            "config: database.url: must be a sqlite:/// or postgresql:// URL, "
            f"got one starting {url.split(':', 1)[0]!r}"
        )


def _at_least(section: str, values: object, **lows: float) -> None:
    for key, low in lows.items():
        if getattr(values, key) < low:
            raise ConfigError(
                f"config: {section}.{key}: must be at least {low}, got {getattr(values, key)}"
            )


def trusted_networks(text: str) -> tuple[IPv4Network | IPv6Network, ...]:
    """The networks of `http.trusted_proxies`."""
    networks = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            networks.append(ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(
                f"config: http.trusted_proxies: {item!r} is not an address or network"
            ) from None
    return tuple(networks)


HOST_PATTERN = re.compile(r"[a-z0-9*]([a-z0-9*.-]*[a-z0-9*])?")


def host_patterns(text: str) -> list[str]:
    """The patterns of `mirror.allow_hosts`, lowercase."""
    return [part.strip().lower() for part in text.split(",") if part.strip()]


def _validate_mirror(mirror: MirrorSettings) -> None:
    prefixes: set[str] = set()
    for i, upstream in enumerate(mirror.upstreams):
        key = f"config: mirror.upstreams[{i}]"
        parts = urlsplit(upstream.url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ConfigError(f"{key}.url: expected an http(s) URL, got {upstream.url!r}")
        if upstream.prefix and not NAME_COMPONENT.fullmatch(upstream.prefix):
            raise ConfigError(
                f"{key}.prefix: must be one repository name component (like ghcr.io), "
                f"got {upstream.prefix!r}"
            )
        if upstream.prefix in prefixes:
            raise ConfigError(f"{key}.prefix: {upstream.prefix or 'empty'} is used twice")
        prefixes.add(upstream.prefix)
        if upstream.password and not upstream.username:
            raise ConfigError(f"{key}.password: given without a username")
        for name in ("keep_days", "max_bytes"):
            if (getattr(upstream, name) or 0) < 0:
                raise ConfigError(f"{key}.{name}: must be at least 0")
        upstream_keys(upstream, key)
    for pattern in host_patterns(mirror.allow_hosts):
        if not HOST_PATTERN.fullmatch(pattern):
            raise ConfigError(
                f"config: mirror.allow_hosts: {pattern!r} is not a host pattern (letters, "
                "digits, dots, dashes and *; no scheme, no port)"
            )
    _at_least(
        "mirror",
        mirror,
        tag_ttl_seconds=0,
        timeout_seconds=1,
        keep_days=0,
        max_bytes=0,
        negative_ttl_seconds=0,
    )


def upstream_keys(upstream: UpstreamSettings, key: str = "mirror.upstreams[]") -> list[TrustedKey]:
    """The public keys of an upstream's `signed_by`, loaded."""
    from registry.signatures import KeyInvalid, load_key  # cryptography: only if asked

    loaded = []
    for path in (p.strip() for p in upstream.signed_by.split(",") if p.strip()):
        try:
            loaded.append(load_key(Path(path).read_text(errors="replace")))
        except OSError as exc:
            raise ConfigError(f"{key}.signed_by: cannot read {path} ({exc.strerror})") from exc
        except KeyInvalid as exc:
            raise ConfigError(f"{key}.signed_by: {path}: {exc}") from exc
    return loaded


GROUP_SOURCES = ("ldap", "oidc")
NAMESPACE_ROLES = ("guest", "developer", "maintainer", "owner")


def _validate_sources(auth: AuthSettings) -> None:
    if auth.local_login not in {"all", "admins"}:
        raise ConfigError(
            f"config: auth.local_login: must be all or admins, got {auth.local_login!r}"
        )
    ldap = auth.ldap
    if ldap.url:
        parts = urlsplit(ldap.url)
        if parts.scheme not in {"ldap", "ldaps"} or not parts.hostname:
            raise ConfigError(
                f"config: auth.ldap.url: expected ldap://host[:port] or ldaps://host[:port], "
                f"got {ldap.url!r}"
            )
        if ldap.start_tls and parts.scheme == "ldaps":
            raise ConfigError("config: auth.ldap.start_tls: ldaps:// is TLS already")
        if "{username}" not in ldap.user_filter:
            raise ConfigError("config: auth.ldap.user_filter: must contain {username}")
        if not ldap.group_attribute and ldap.group_base and "{dn}" not in ldap.group_filter:
            raise ConfigError("config: auth.ldap.group_filter: must contain {dn}")
        _at_least("auth.ldap", ldap, timeout_seconds=0.1, pool_size=1)
    oidc = auth.oidc
    if oidc.issuer:
        if urlsplit(oidc.issuer).scheme not in {"http", "https"}:
            raise ConfigError(
                f"config: auth.oidc.issuer: expected an http(s) URL, got {oidc.issuer!r}"
            )
        if not oidc.client_id:
            raise ConfigError("config: auth.oidc.client_id: required with auth.oidc.issuer")
        _at_least("auth.oidc", oidc, timeout_seconds=0.1)
    for i, mapping in enumerate(auth.group_roles):
        key = f"config: auth.group_roles[{i}]"
        if mapping.source not in GROUP_SOURCES:
            raise ConfigError(f"{key}.source: must be ldap or oidc, got {mapping.source!r}")
        if not mapping.group:
            raise ConfigError(f"{key}.group: required")
        if mapping.role == "admin":
            if mapping.namespace:
                raise ConfigError(f"{key}.namespace: admin is everywhere; leave it out")
        elif mapping.role not in NAMESPACE_ROLES:
            raise ConfigError(
                f"{key}.role: must be one of {', '.join(NAMESPACE_ROLES)} or admin, "
                f"got {mapping.role!r}"
            )
        elif not NAME_COMPONENT.fullmatch(mapping.namespace):
            raise ConfigError(f"{key}.namespace: a namespace name is needed for {mapping.role}")


def _validate_s3(s3: S3Settings) -> None:
    if not s3.bucket:
        raise ConfigError("config: storage.s3.bucket: required when storage.driver is s3")
    if s3.addressing_style not in {"auto", "virtual", "path"}:
        raise ConfigError(
            "config: storage.s3.addressing_style: must be auto, virtual or path, "
            f"got {s3.addressing_style!r}"
        )
    if bool(s3.access_key) != bool(s3.secret_key):
        raise ConfigError(
            "config: storage.s3.access_key and secret_key: give both, or neither to use "
            "boto3's credential chain"
        )
    _at_least(
        "storage.s3",
        s3,
        pool_size=1,
        timeout_seconds=1,
        max_attempts=1,
        presign_expiry_seconds=1,
        part_size=1024,
        max_parts=2,
    )
    if s3.max_copy_bytes < 2 * s3.part_size:
        raise ConfigError("config: storage.s3.max_copy_bytes: must be at least 2 x part_size")
