"""What every command shares: the registry built for one command, who runs it, and the
schema brought up to date first."""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from registry import preflight
from registry.config import Settings, env_name
from registry.metadata.database import Database

if TYPE_CHECKING:
    # The app's parts are imported where a command builds them: `serve` does not (its
    # workers do).
    from registry.wiring import Registry

T = TypeVar("T")

log = logging.getLogger("registry")


def migrate(settings: Settings, quiet: bool = False) -> None:
    from registry.metadata.migrate import upgrade

    try:
        upgrade(settings.database_url)
    except Exception as exc:
        raise preflight.Unusable(
            f"database.url ({env_name('database.url')}): migrating the schema failed: "
            f"{preflight.cause(exc)}"
        ) from exc
    log.log(logging.DEBUG if quiet else logging.INFO, "database is at the latest schema")


def with_registry(settings: Settings, work: Callable[[Registry], Awaitable[T]]) -> T:
    """Run `work` on a registry built for one command, and close it after."""

    from registry.wiring import Registry

    async def run() -> T:
        registry = Registry(settings)
        try:
            return await work(registry)
        finally:
            await registry.close()

    return asyncio.run(run())


def operator() -> str:
    """Who runs the command, as the system names them."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container's uid with no passwd entry
        return str(os.getuid())


def run_on_database(
    settings: Settings,
    work: Callable[[Database], Awaitable[None]],
    refused: tuple[type[Exception], ...],
) -> int:
    """Run `work` on a database of its own (the account and webhook commands); exit 1
    with one line when it raises one of `refused`, the errors it means for the operator."""

    async def run() -> None:
        db = Database(settings.database_url, pool_size=1)
        try:
            await work(db)
        finally:
            await db.close()

    try:
        asyncio.run(run())
    except refused as exc:
        print(f"registry: {getattr(exc, 'text', exc)}", file=sys.stderr)
        return 1
    return 0
