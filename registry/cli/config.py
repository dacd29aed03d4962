"""What the registry is set to: `registry config show` (every setting, its value with
secrets masked, and where it came from), and the main settings `registry serve --help`
lists with their variables."""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url

from registry.config import Settings, env_name, keys, sources, value_of

# What an operator sets first, for `registry serve --help`.
MAIN_SETTINGS = (
    "data_dir",
    "http.host",
    "http.port",
    "http.workers",
    "database.url",
    "storage.driver",
    "storage.s3.bucket",
    "storage.s3.endpoint_url",
    "auth.enabled",
    "admin_password",
    "mirror.enabled",
    "mirror.upstreams",
    "log_level",
    "log_format",
)
# The last component of the keys whose values are secrets: never printed.
_SECRETS = {
    "password",
    "admin_password",
    "secret_key",
    "token",
    "bind_password",
    "client_secret",
}
MASK = "********"

# Flags that stand for a setting, on the command line of every command (--data-dir) or
# of serve: they are set as its variable, which the workers inherit.
FLAGS = {"data_dir": "data_dir", "host": "http.host", "port": "http.port"}


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    group = commands.add_parser(
        "config", help="the effective settings", parents=[common]
    ).add_subparsers(dest="config_command", required=True)
    show_command = group.add_parser(
        "show",
        help="print every setting, its value (secrets masked) and where it came from: "
        "default, file or environment",
        parents=[common],
    )
    show_command.set_defaults(
        run=lambda s, a: show(s, a.config, os.environ, a.given), checked=False
    )


def serve_epilog() -> str:
    defaults = Settings()
    lines = ["main settings: YAML key (in --config's file), environment variable, default"]
    for key in MAIN_SETTINGS:
        default = _shown(key, value_of(defaults, key))
        lines.append(f"  {key:<24} {env_name(key):<32} {default}")
    lines += [
        "",
        "Any REGISTRY_X may instead be REGISTRY_X_FILE, a file that holds the value (a",
        "Docker secret). `registry config show` prints every setting, its value and where",
        "it came from; the README's Configuration section says what each does.",
    ]
    return "\n".join(lines)


def apply_flags(args: argparse.Namespace, environ: os._Environ[str]) -> dict[str, str]:
    """Set the variables of the setting flags given: they win over the environment and
    the file, in this process and in the workers it starts. Returns where each of those
    settings came from."""
    given = {}
    for flag, key in FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            environ[env_name(key)] = str(value)
            given[key] = f"command line --{flag.replace('_', '-')}"
    return given


def show(
    settings: Settings, path: str | None, environ: Mapping[str, str], given: dict[str, str]
) -> int:
    found = {**sources(path, environ), **given}
    rows = [(key, _shown(key, value_of(settings, key)), found[key]) for key in keys()]
    for key, value, source in rows:
        print(f"{key + ' = ' + value:<60} # {source}")
    return 0


def _shown(key: str, value: Any) -> str:
    """A value as YAML would write it, with secrets masked."""
    name = key.rpartition(".")[2]
    if name in _SECRETS:
        return MASK if value else '""'
    if key == "database.url" and value:
        return make_url(value).render_as_string(hide_password=True)
    if name == "url":
        return masked_url(value)
    if isinstance(value, tuple):  # mirror.upstreams: mappings, with their passwords
        return "[" + ", ".join(_mapping(each) for each in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, str):
        return value if value else '""'
    return str(value)


def masked_url(url: str) -> str:
    """An upstream's URL without the password it may be written with."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    place = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username or ''}:{MASK}@{place}").geturl()


def _mapping(item: Any) -> str:
    parts = []
    for name, value in ((f.name, getattr(item, f.name)) for f in dataclasses.fields(item)):
        if value in ("", None):
            continue
        shown = MASK if name in _SECRETS else _shown(name, value)
        parts.append(f"{name}: {shown}")
    return "{" + ", ".join(parts) + "}"
