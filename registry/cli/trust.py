"""`registry trust add|list|rm`: the public keys a namespace (or, without --namespace,
the whole registry) trusts to sign its images, as /api/v1/trust/keys manages them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from registry.cli.common import with_registry
from registry.config import Settings
from registry.errors import RegistryError
from registry.kept import keeper
from registry.services.trust import Trust

Command = Callable[[Trust, argparse.Namespace], Awaitable[None]]


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("trust", help="keys trusted to sign images (signature policy)")
    parser.set_defaults(run=run, audited=True)
    group = parser.add_subparsers(dest="action", required=True)

    def command(name: str, handler: Command, help_text: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = group.add_parser(name, help=help_text, parents=[common])
        sub.add_argument(
            "--namespace",
            default="",
            help="a namespace's keys (default: the registry's, which every namespace trusts)",
        )
        sub.set_defaults(handler=handler)
        return sub

    add = command("add", _add, "trust a public key: PEM (cosign.pub: ECDSA P-256), RSA, Ed25519")
    add.add_argument("name", help="what the console and the API call it, e.g. release-2026")
    add.add_argument("pem_file", help="the public key's file, or - to read it from stdin")
    command("list", _list, "list the trusted keys")
    remove = command("rm", _remove, "stop trusting a key: what only it signed is unsigned at once")
    remove.add_argument("name")


def run(settings: Settings, args: argparse.Namespace) -> int:
    def work(registry: Any) -> Awaitable[None]:
        handler: Command = args.handler
        return handler(registry.trust, args)

    try:
        if args.action == "add":  # read here: the commands run on the event loop
            args.pem = _read(args.pem_file)
        with_registry(settings, work)
    except (RegistryError, OSError) as exc:
        print(f"registry: {getattr(exc, 'text', exc)}", file=sys.stderr)
        return 1
    return 0


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read(64 * 1024)
    with open(path, encoding="utf-8", errors="replace") as file:
        return file.read(64 * 1024)


async def _add(trust: Trust, args: argparse.Namespace) -> None:
    key = await trust.add_key(args.namespace, args.name, args.pem)
    print(
        f"{keeper(args.namespace)} trusts {key.algorithm} key {key.name!r} ({key.fingerprint}); "
        "signatures already stored are checked against it in the background"
    )


async def _list(trust: Trust, args: argparse.Namespace) -> None:
    for key in await trust.keys(args.namespace or None):
        state = "" if key.scanned else "\t(checking stored signatures)"
        owner = key.namespace or "(registry)"
        print(f"{owner}\t{key.name}\t{key.algorithm}\t{key.fingerprint}{state}")


async def _remove(trust: Trust, args: argparse.Namespace) -> None:
    await trust.remove_key(args.namespace, args.name)
    print(f"{keeper(args.namespace)} no longer trusts key {args.name!r}")
