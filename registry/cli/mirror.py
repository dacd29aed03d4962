"""`registry mirror prefetch`: images into the pull-through cache ahead of a rollout."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from registry.cli.common import with_registry
from registry.config import Settings
from registry.errors import RegistryError

if TYPE_CHECKING:
    from registry.wiring import Registry


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    mirror = commands.add_parser(
        "mirror", help="the pull-through mirror's cache", parents=[common]
    ).add_subparsers(dest="mirror_command", required=True)
    prefetch = mirror.add_parser(
        "prefetch",
        help="fetch images into the cache ahead of a rollout (ghcr.io/org/app:v1, nginx, ...)",
        parents=[common],
    )
    prefetch.add_argument("references", nargs="+", metavar="REF")
    prefetch.add_argument(
        "--platform",
        action="append",
        default=[],
        help="only this platform of an index (os/arch or os/arch/variant; repeatable); "
        "default: all of them",
    )
    prefetch.set_defaults(run=lambda s, a: _prefetch(s, a.references, a.platform), audited=True)


def _prefetch(settings: Settings, references: list[str], platforms: list[str]) -> int:
    """Fetch each reference into the mirror's cache, with a line per manifest and blob."""
    if not settings.mirror.enabled:
        print("registry: this registry is not a mirror (mirror.enabled is off)", file=sys.stderr)
        return 2
    from registry.proxy.prefetch import Prefetcher, check_platform

    async def work(registry: Registry) -> int:
        assert registry.mirror is not None
        prefetcher = Prefetcher(registry.mirror, registry.pulls)
        failed = 0
        try:
            wanted = [check_platform(p) for p in platforms]
            for reference in references:
                try:
                    await prefetcher.run(reference, wanted, lambda line: print(line, flush=True))
                except RegistryError as exc:
                    failed += 1
                    print(f"registry: {reference}: {exc.text}", file=sys.stderr)
        except RegistryError as exc:
            print(f"registry: {exc.text}", file=sys.stderr)
            return 2
        finally:
            await registry.pulls.flush()
        return 1 if failed else 0

    return with_registry(settings, work)
