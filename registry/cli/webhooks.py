"""`registry webhook add|list|rm|deliveries|redeliver`: webhooks straight in the database,
with the server's settings, as the account commands (cli/accounts.py)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from registry.cli.common import run_on_database
from registry.config import Settings
from registry.errors import RegistryError
from registry.metadata.database import Database
from registry.metadata.events import WEBHOOK_KINDS
from registry.services.webhooks import FORMATS, Webhooks

Command = Callable[[Webhooks, argparse.Namespace], Awaitable[None]]


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("webhook", help="endpoints that receive events")
    parser.set_defaults(run=run, audited=True)
    group = parser.add_subparsers(dest="action", required=True)

    def command(name: str, handler: Command, help_text: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = group.add_parser(name, help=help_text, parents=[common])
        sub.set_defaults(handler=handler)
        return sub

    add = command("add", _add, "add a webhook; prints its secret once")
    add.add_argument("url")
    add.add_argument("--events", default="push,delete", help=f"some of {','.join(WEBHOOK_KINDS)}")
    add.add_argument("--namespace", help="only this namespace's events (default: all)")
    add.add_argument("--repositories", help="a glob of repository names, e.g. team/*")
    add.add_argument("--tags", help="a glob of tags, e.g. release-*")
    add.add_argument("--format", choices=FORMATS, default="distribution")
    add.add_argument("--secret-stdin", action="store_true", help="read the secret from stdin")
    command("list", _list, "list webhooks")
    command("rm", _remove, "remove a webhook").add_argument("id", type=int)
    deliveries = command("deliveries", _deliveries, "a webhook's latest deliveries")
    deliveries.add_argument("id", type=int)
    deliveries.add_argument("--state", choices=("pending", "delivered", "failed"))
    deliveries.add_argument("-n", type=int, default=20)
    again = command("redeliver", _redeliver, "send a delivery, or every failed one, again")
    again.add_argument("id", type=int)
    again.add_argument("--delivery", type=int, help="this delivery (default: every failed one)")


def run(settings: Settings, args: argparse.Namespace) -> int:
    def work(db: Database) -> Awaitable[None]:
        handler: Command = args.handler
        return handler(Webhooks(db, settings.webhooks, settings.audit, "cli"), args)

    return run_on_database(settings, work, (RegistryError,))


async def _add(webhooks: Webhooks, args: argparse.Namespace) -> None:
    secret = sys.stdin.readline().rstrip("\r\n") if args.secret_stdin else None
    endpoint, secret = await webhooks.add(
        namespace=args.namespace,
        url=args.url,
        events=[e.strip() for e in args.events.split(",") if e.strip()],
        repositories=args.repositories,
        tags=args.tags,
        secret=secret,
        form=args.format,
        created_by="cli",
    )
    print(f"added webhook {endpoint.id} for {', '.join(endpoint.events)}")
    if not args.secret_stdin:
        print(f"secret (shown once; receivers check X-Registry-Signature with it): {secret}")


async def _list(webhooks: Webhooks, args: argparse.Namespace) -> None:
    for e in await webhooks.endpoints():
        state = "" if e.enabled else " (disabled)"
        scope = e.namespace or "all namespaces"
        print(f"{e.id}\t{e.url}\t{','.join(e.events)}\t{scope}\t{e.format}{state}")


async def _remove(webhooks: Webhooks, args: argparse.Namespace) -> None:
    await webhooks.remove(args.id)
    print(f"removed webhook {args.id}")


async def _deliveries(webhooks: Webhooks, args: argparse.Namespace) -> None:
    for row in await webhooks.deliveries(args.id, args.state, None, args.n):
        last = row["last_attempt"] or {}
        outcome = last.get("status") or last.get("error") or "not tried yet"
        print(f"{row['id']}\t{row['action']}\t{row['state']}\t{row['attempts']}\t{outcome}")


async def _redeliver(webhooks: Webhooks, args: argparse.Namespace) -> None:
    count = await webhooks.redeliver(args.id, args.delivery)
    print(f"queued {count} deliveries again")
