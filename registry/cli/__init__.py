"""The `registry` command: serve, migrate, the storage, the mirror, settings, accounts,
webhooks and trusted keys.

Each command module registers its commands (`add_commands`) with the function that runs
one (`run`, given the settings and the parsed arguments) and what it needs first:
`checked` (the data folder and the database answer; every command but `config`),
`migrates` (the schema brought up to date, quietly unless it is `migrate`) and
`audited` (what it changes is done by the operator at this shell). main() reads the
settings, does those, and runs the command, the same way for all."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from registry import __version__, context, logs, preflight
from registry.cli import accounts, config, mirror, serve, storage, trust, webhooks
from registry.cli.common import migrate, operator
from registry.config import ConfigError, Settings, load_settings, unknown_variables
from registry.errors import Unavailable

log = logging.getLogger("registry")


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # The reader of the output (head, less) has gone: no traceback for that. Python's
        # own flush at exit would fail again; it goes to /dev/null instead.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="registry", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"registry {__version__}")
    parser.set_defaults(checked=True, migrates="quietly", audited=False)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="YAML settings file (default: $REGISTRY_CONFIG)")
    common.add_argument(
        "--data-dir", help="the data folder (data_dir, REGISTRY_DATA_DIR; default ./data)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for module in (serve, config, storage, mirror, accounts, webhooks, trust):
        module.add_commands(commands, common)
    return parser


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    args.given = config.apply_flags(args, os.environ)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"registry: {exc}", file=sys.stderr)
        return 2
    if not args.checked:  # reads the settings only: nothing to check or open
        return int(args.run(settings, args))
    logs.configure(settings.log_level, settings.log_format)
    for warning in unknown_variables(os.environ):
        log.warning(warning)
    try:
        return _run(args, settings)
    except (preflight.Unusable, ConfigError) as exc:
        print(f"registry: {exc}", file=sys.stderr)
        return 2
    except Unavailable as exc:  # the database or the blob store went away mid-command
        print(f"registry: {args.command}: {exc.text}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, settings: Settings) -> int:
    # Every such command uses the data folder and the database: each is checked first,
    # and a failure is one line (preflight.Unusable).
    preflight.data_dir(settings)
    preflight.sqlite_folder(settings)
    preflight.database(settings)
    if args.migrates:
        migrate(settings, quiet=args.migrates == "quietly")
    if not args.audited:
        return int(args.run(settings, args))
    with context.using(context.Context(actor=f"cli:{operator()}")):
        return int(args.run(settings, args))
