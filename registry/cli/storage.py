"""`registry gc`, `retention`, `usage`, `check` and `purge-uploads`: the storage, by hand
or from cron (the workers of `registry serve` do the same on their own)."""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from registry import readable
from registry.cli.common import operator, with_registry
from registry.config import Settings
from registry.metadata.models import now

if TYPE_CHECKING:
    from registry.services.gc import Garbage
    from registry.wiring import Registry


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    purge = commands.add_parser(
        "purge-uploads",
        help="end upload sessions idle for long, and remove bytes of interrupted uploads",
        parents=[common],
    )
    purge.add_argument("--idle-hours", type=float, default=24.0)
    purge.set_defaults(run=lambda s, a: _purge_uploads(s, a.idle_hours))
    gc = commands.add_parser(
        "gc",
        help="garbage collection: delete what nothing references and no lease holds (the "
        "worker of `registry serve` does the same every gc.interval_seconds)",
        parents=[common],
    )
    gc.add_argument(
        "action",
        nargs="?",
        choices=("run", "hold", "release"),
        default="run",
        help="run a pass (the default); hold every replica's deletions for --hours, as a "
        "backup must while it copies the blobs; release the hold",
    )
    gc.add_argument(
        "--dry-run",
        action="store_true",
        help="only list the blobs a collection would delete now, and the bytes it would free",
    )
    gc.add_argument("--hours", type=float, default=6.0, help="how long a hold lasts at most")
    gc.set_defaults(run=_gc_command)
    retention = commands.add_parser(
        "retention",
        help="apply the namespaces' retention policies now (the worker of `registry serve` "
        "does every gc.retention_interval_seconds)",
        parents=[common],
    )
    retention.add_argument(
        "--dry-run", action="store_true", help="print what would go, and change nothing"
    )
    retention.add_argument("--namespace", help="only this namespace's policy")
    retention.set_defaults(run=lambda s, a: _retention(s, a.dry_run, a.namespace))
    usage = commands.add_parser(
        "usage",
        help="storage used, like `docker system df`: per namespace, or per repository of one",
        parents=[common],
    )
    usage.add_argument("--namespace", help="each repository of this namespace")
    usage.add_argument(
        "--bytes", action="store_true", help="sizes in bytes, for scripts (default: KiB, MiB...)"
    )
    usage.set_defaults(run=lambda s, a: _usage(s, a.namespace, str if a.bytes else readable.size))
    check = commands.add_parser(
        "check",
        help="walk the storage once and compare it with the index: bytes without a row, "
        "rows without bytes, sizes that disagree (exit 1 if any is left)",
        parents=[common],
    )
    check.add_argument(
        "--repair",
        action="store_true",
        help="do the safe repairs: queue bytes without a row for garbage collection, "
        "write a manifest's missing bytes again from the database",
    )
    check.set_defaults(run=lambda s, a: _check(s, a.repair))


def _gc_command(settings: Settings, args: argparse.Namespace) -> int:
    if args.action != "run":
        return _gc_hold(settings, args.hours if args.action == "hold" else None)
    return _gc_dry_run(settings) if args.dry_run else _gc(settings)


def _purge_uploads(settings: Settings, idle_hours: float) -> int:
    ended = with_registry(settings, lambda r: r.uploads.purge(timedelta(hours=idle_hours)))
    print(f"ended {ended} upload sessions idle for more than {idle_hours:g} hours")
    return 0


def _gc_dry_run(settings: Settings) -> int:
    """The blobs a pass would delete now (digest, bytes), then what waits and why."""

    async def look(registry: Registry) -> tuple[Garbage, list[str]]:
        return await registry.gc.find(), registry.gc.explain(await registry.gc.waiting())

    garbage, explained = with_registry(settings, look)
    for digest, size in garbage.blobs:
        print(f"{digest}\t{size}")
    print(
        f"{len(garbage.blobs)} blobs ({readable.size(garbage.bytes)}) would be deleted now; "
        f"{garbage.queued} queued for a look in all",
        file=sys.stderr,
    )
    for line in explained:
        print(line, file=sys.stderr)
    return 0


def _gc(settings: Settings) -> int:
    done = with_registry(settings, lambda r: r.gc.collect())
    print(
        f"deleted {done.manifests_deleted} manifests, {done.blobs_deleted} blobs "
        f"({readable.size(done.bytes_freed)}); {done.postponed} "
        f"postponed by their lease; ended {done.uploads_ended} abandoned uploads"
    )
    if done.error is not None:
        print(f"registry: garbage collection failed: {done.error}", file=sys.stderr)
        return 1
    return 0


def _gc_hold(settings: Settings, hours: float | None) -> int:
    """Hold deletions for `hours` (None: release the hold)."""
    until = now() + timedelta(hours=hours) if hours is not None else None
    holder = f"cli:{operator()}@{socket.gethostname()}"
    held = with_registry(settings, lambda r: r.gc.hold(until, holder))
    if held is None:
        print("garbage collection deletes again (no hold)")
    else:
        print(
            f"garbage collection deletes nothing until {held:%Y-%m-%d %H:%M:%S} UTC "
            "(`registry gc release` ends the hold sooner)"
        )
    return 0


def _retention(settings: Settings, dry_run: bool, namespace: str | None) -> int:
    outcomes = with_registry(
        settings, lambda r: r.retention.run(dry_run=dry_run, namespace=namespace)
    )
    for outcome in outcomes:
        for tag in outcome.tags:
            print(f"{outcome.repository}\ttag\t{tag}")
        for digest in outcome.manifests:
            print(f"{outcome.repository}\tmanifest\t{digest}")
    verb = "would delete" if dry_run else "deleted"
    tags = sum(len(o.tags) for o in outcomes)
    manifests = sum(len(o.manifests) for o in outcomes)
    freed = sum(o.bytes_freed for o in outcomes)
    print(
        f"retention {verb} {tags} tags and {manifests} manifests in {len(outcomes)} "
        f"repositories; {freed} bytes to free once garbage collection runs",
        file=sys.stderr,
    )
    return 0


def _usage(settings: Settings, namespace: str | None, size: Callable[[int], str]) -> int:
    """Per namespace, or per repository of one; sizes as `size` writes them."""
    column = "BYTES" if size is str else "SIZE"
    if namespace is None:
        overall = with_registry(settings, lambda r: r.usage.overall())
        print(f"NAMESPACE\tREPOSITORIES\t{column}")
        for row in overall["namespaces"]:
            print(f"{row['namespace']}\t{row['repositories']}\t{size(row['bytes'])}")
        print(
            f"stored {size(overall['stored_bytes'])}; {size(overall['reclaimable_bytes'])} "
            f"reclaimable now; {overall['uploads']} uploads in progress",
            file=sys.stderr,
        )
        return 0
    one = with_registry(settings, lambda r: r.usage.namespace(namespace))
    print(f"REPOSITORY\t{column}\tSHARED")
    for repo in one["repositories"]:
        print(f"{repo['name']}\t{size(repo['bytes'])}\t{size(repo['shared_bytes'])}")
    quota = "no quota" if one["quota_bytes"] is None else f"quota {size(one['quota_bytes'])}"
    print(
        f"{namespace}: {size(one['bytes'])} ({quota}); {size(one['reclaimable_bytes'])} "
        f"reclaimable now; {one['uploads']} uploads in progress",
        file=sys.stderr,
    )
    return 0


def _check(settings: Settings, repair: bool) -> int:
    report = with_registry(settings, lambda r: r.check.run(repair=repair))
    for finding in report.findings:
        state = "\trepaired" if finding.repaired else ""
        print(f"{finding.kind}\t{finding.digest}\t{finding.detail}{state}")
    left = len(report.unrepaired)
    print(
        f"checked {report.blobs_stored} stored blobs against {report.rows} rows: "
        f"{len(report.findings)} problems, {left} left",
        file=sys.stderr,
    )
    return 1 if left else 0
