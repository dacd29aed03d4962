"""The `registry` command: serve, migrate, and account management."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import os
import resource
import shutil
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeVar

from registry import (
    __version__,
    cli_accounts,
    cli_config,
    cli_webhooks,
    context,
    logs,
    metrics,
    preflight,
    readable,
)
from registry.auth.accounts import Accounts
from registry.auth.tokens import authority_from_settings
from registry.config import ConfigError, Settings, env_name, load_settings, unknown_variables
from registry.errors import RegistryError, Unavailable
from registry.metadata.database import Database
from registry.metadata.models import now

if TYPE_CHECKING:
    # The app is imported where a command builds one: `serve` does not (its workers do).
    from registry.services.gc import Garbage
    from registry.wiring import Registry

T = TypeVar("T")

log = logging.getLogger("registry")


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # The reader of the output (head, less) has gone: no traceback for that. Python's
        # own flush at exit would fail again; it goes to /dev/null instead.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="registry", description=__doc__)
    parser.add_argument("--version", action="version", version=f"registry {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="YAML settings file (default: $REGISTRY_CONFIG)")
    common.add_argument(
        "--data-dir", help="the data folder (data_dir, REGISTRY_DATA_DIR; default ./data)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="run the registry (applies pending migrations first)",
        description="Run the registry: apply pending migrations, then serve /v2/, /token, "
        "/api/v1/ and the console. Settings come from their defaults, then --config's file, "
        "then REGISTRY_* variables, then these flags.",
        epilog=cli_config.serve_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    serve.add_argument("--host", help="address to listen on (http.host, REGISTRY_HTTP_HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (http.port, REGISTRY_HTTP_PORT)")
    commands.add_parser(
        "migrate", help="apply pending database migrations and exit", parents=[common]
    )
    config = commands.add_parser(
        "config", help="the effective settings", parents=[common]
    ).add_subparsers(dest="config_command", required=True)
    config.add_parser(
        "show",
        help="print every setting, its value (secrets masked) and where it came from: "
        "default, file or environment",
        parents=[common],
    )
    purge = commands.add_parser(
        "purge-uploads",
        help="end upload sessions idle for long, and remove bytes of interrupted uploads",
        parents=[common],
    )
    purge.add_argument("--idle-hours", type=float, default=24.0)
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
    usage = commands.add_parser(
        "usage",
        help="storage used, like `docker system df`: per namespace, or per repository of one",
        parents=[common],
    )
    usage.add_argument("--namespace", help="each repository of this namespace")
    usage.add_argument(
        "--bytes", action="store_true", help="sizes in bytes, for scripts (default: KiB, MiB...)"
    )
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
    cli_accounts.add_commands(commands, common)
    cli_webhooks.add_commands(commands, common)
    args = parser.parse_args(argv)

    given = cli_config.apply_flags(args, os.environ)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"registry: {exc}", file=sys.stderr)
        return 2
    if args.command == "config":  # reads the settings only: nothing to check or open
        return cli_config.show(settings, args.config, os.environ, given)
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
    # Every command uses the data folder and the database: each is checked first, and a
    # failure is one line (preflight.Unusable).
    preflight.data_dir(settings)
    preflight.sqlite_folder(settings)
    preflight.database(settings)
    if args.command == "migrate":
        _migrate(settings)
        return 0
    if args.command == "serve":
        return _serve(settings, args.config)
    if args.command == "purge-uploads":
        _migrate(settings, quiet=True)
        return _purge_uploads(settings, args.idle_hours)
    if args.command == "gc":
        _migrate(settings, quiet=True)
        if args.action != "run":
            return _gc_hold(settings, args.hours if args.action == "hold" else None)
        return _gc_dry_run(settings) if args.dry_run else _gc(settings)
    if args.command == "retention":
        _migrate(settings, quiet=True)
        return _retention(settings, args.dry_run, args.namespace)
    if args.command == "usage":
        _migrate(settings, quiet=True)
        return _usage(settings, args.namespace, readable.size if not args.bytes else str)
    if args.command == "check":
        _migrate(settings, quiet=True)
        return _check(settings, args.repair)
    if args.command == "mirror":
        _migrate(settings, quiet=True)
        with context.using(context.Context(actor=f"cli:{_operator()}")):
            return _prefetch(settings, args.references, args.platform)
    _migrate(settings, quiet=True)
    # What the commands change is audited as done by the operator at this shell.
    with context.using(context.Context(actor=f"cli:{_operator()}")):
        if getattr(args, "webhooks", False):
            return cli_webhooks.run(settings, args)
        return cli_accounts.run(settings, args)


def _migrate(settings: Settings, quiet: bool = False) -> None:
    from registry.metadata.migrate import upgrade

    try:
        upgrade(settings.database_url)
    except Exception as exc:
        raise preflight.Unusable(
            f"database.url ({env_name('database.url')}): migrating the schema failed: "
            f"{preflight.cause(exc)}"
        ) from exc
    log.log(logging.DEBUG if quiet else logging.INFO, "database is at the latest schema")


def _with_registry(settings: Settings, work: Callable[[Registry], Awaitable[T]]) -> T:
    """Run `work` on a registry built for one command, and close it after."""

    from registry.wiring import Registry

    async def run() -> T:
        registry = Registry(settings)
        try:
            return await work(registry)
        finally:
            await registry.close()

    return asyncio.run(run())


def _purge_uploads(settings: Settings, idle_hours: float) -> int:
    ended = _with_registry(settings, lambda r: r.uploads.purge(timedelta(hours=idle_hours)))
    print(f"ended {ended} upload sessions idle for more than {idle_hours:g} hours")
    return 0


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

    return _with_registry(settings, work)


def _gc_dry_run(settings: Settings) -> int:
    """The blobs a pass would delete now (digest, bytes), then what waits and why."""

    async def look(registry: Registry) -> tuple[Garbage, list[str]]:
        return await registry.gc.find(), registry.gc.explain(await registry.gc.waiting())

    garbage, explained = _with_registry(settings, look)
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
    done = _with_registry(settings, lambda r: r.gc.collect())
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
    holder = f"cli:{_operator()}@{socket.gethostname()}"
    held = _with_registry(settings, lambda r: r.gc.hold(until, holder))
    if held is None:
        print("garbage collection deletes again (no hold)")
    else:
        print(
            f"garbage collection deletes nothing until {held:%Y-%m-%d %H:%M:%S} UTC "
            "(`registry gc release` ends the hold sooner)"
        )
    return 0


def _retention(settings: Settings, dry_run: bool, namespace: str | None) -> int:
    outcomes = _with_registry(
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
        overall = _with_registry(settings, lambda r: r.usage.overall())
        print(f"NAMESPACE\tREPOSITORIES\t{column}")
        for row in overall["namespaces"]:
            print(f"{row['namespace']}\t{row['repositories']}\t{size(row['bytes'])}")
        print(
            f"stored {size(overall['stored_bytes'])}; {size(overall['reclaimable_bytes'])} "
            f"reclaimable now; {overall['uploads']} uploads in progress",
            file=sys.stderr,
        )
        return 0
    one = _with_registry(settings, lambda r: r.usage.namespace(namespace))
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
    report = _with_registry(settings, lambda r: r.check.run(repair=repair))
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


def _check_s3(settings: Settings) -> str | None:
    """Why the S3 bucket cannot be used, or None if it can."""
    from registry.storage.base import StorageError
    from registry.storage.s3 import S3Store

    async def check() -> None:
        store = S3Store(settings.storage.s3)
        try:
            await store.check()
        finally:
            await store.close()

    try:
        asyncio.run(check())
    except StorageError as exc:
        return f"{exc}; check the bucket, endpoint_url and credentials"
    return None


def _first_admin(settings: Settings) -> None:
    """With no admin yet, create `admin`: with REGISTRY_ADMIN_PASSWORD, or with a random
    password printed here once and kept in the data folder, readable by its owner only."""

    async def ensure() -> str | None:
        db = Database(settings.database_url, pool_size=1)
        try:
            return await Accounts(db).ensure_admin(settings.admin_password or None)
        finally:
            await db.close()

    password = asyncio.run(ensure())
    if password is None:
        return
    path = Path(settings.data_dir).resolve() / "admin-password"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(password + "\n")
    # Printed, not logged: the operator sees it once, and log collectors never do.
    print(
        "\nCreated the first admin account.\n"
        f"  username: admin\n  password: {password}\n"
        f"It is also in {path} (mode 0600). Change it with `registry user passwd admin`.\n",
        file=sys.stderr,
        flush=True,
    )


def _log_mirror(settings: Settings) -> None:
    """What the mirror serves from where, once at start: the first thing to check when
    a pull does not come from the upstream expected."""
    mirror = settings.mirror
    for upstream in mirror.upstreams:
        names = f"{upstream.prefix}/..." if upstream.prefix else "every other name"
        login = f"as {upstream.username}" if upstream.username else "anonymously"
        log.info("mirroring %s from %s, %s", names, cli_config.masked_url(upstream.url), login)
    if mirror.allow_hosts:
        log.info("mirroring any host that matches %s (mirror.allow_hosts)", mirror.allow_hosts)
    hosted = "refused (mirror_only)" if mirror.mirror_only else "hosted in namespaces made here"
    log.info("pushes are %s; cached manifests kept %g days unpulled", hosted, mirror.keep_days)


def _raise_open_files_limit() -> None:
    """Every connection is a file: take the hard limit (workers inherit it), so that
    many idle clients cannot use up a soft limit of 1024 and lock the others out."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _operator() -> str:
    """Who runs the command, as the system names them."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container's uid with no passwd entry
        return str(os.getuid())


@contextlib.contextmanager
def _metrics_folder(workers: int) -> Iterator[None]:
    """With several workers, Prometheus metrics go through files in a folder they share
    (registry/metrics.py): the operator's PROMETHEUS_MULTIPROC_DIR, emptied, or a
    temporary one, removed at the end."""
    if workers < 2:
        yield
        return
    given = os.environ.get(metrics.MULTIPROC_ENV)
    folder = Path(given) if given else Path(tempfile.mkdtemp(prefix="registry-metrics-"))
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    os.environ[metrics.MULTIPROC_ENV] = str(folder)
    try:
        yield
    finally:
        if not given:
            shutil.rmtree(folder, ignore_errors=True)


# How long uvicorn waits for a worker to answer its ping (a thread of the worker's own,
# started as the worker's interpreter comes up) before it kills the worker as hung. Its
# default, 5 s, is less than a worker's start on a busy 2-core machine (imports alone
# take 3.5 s there): uvicorn killed workers that were still starting, and started them
# again. A worker that dies is noticed at once whatever this is; this bounds only a
# worker that is alive and does not answer.
WORKER_HEALTHCHECK_SECONDS = 60


def _serve(settings: Settings, config_path: str | None) -> NoReturn:
    import uvicorn

    if settings.auth.enabled:
        # A bad key stops the start here, in one line, rather than in every worker.
        authority_from_settings(settings)
    if settings.storage.driver == "s3" and (problem := _check_s3(settings)):
        raise preflight.Unusable(f"storage.s3: {problem}")
    preflight.port(settings)
    _migrate(settings)
    if settings.auth.enabled:
        _first_admin(settings)
    if config_path:
        # Worker processes rebuild the settings from the same file and environment.
        os.environ["REGISTRY_CONFIG"] = os.path.abspath(config_path)
    _raise_open_files_limit()
    log.info(
        "registry %s listening on %s:%d (data in %s)",
        __version__,
        settings.http.host,
        settings.http.port,
        os.path.abspath(settings.data_dir),
    )
    if settings.mirror.enabled:
        _log_mirror(settings)
    with _metrics_folder(settings.http.workers):
        uvicorn.run(
            "registry.app:app_from_environment",
            factory=True,
            host=settings.http.host,
            port=settings.http.port,
            workers=settings.http.workers,
            log_level=settings.log_level,
            # Logging is ours (registry/logs.py), in this process and in each worker; so
            # is the access line (api/observe.py).
            log_config=None,
            access_log=False,
            proxy_headers=False,
            server_header=False,
            timeout_keep_alive=settings.http.keepalive_seconds,
            timeout_graceful_shutdown=settings.http.drain_seconds,
            http="registry.server:GuardedProtocol",
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
        )
    # Served and stopped, workers joined, the metrics folder gone: only logs and
    # standard streams are left to write. The interpreter's own teardown of everything
    # the start loaded took up to 1 s of CPU after this point, which a restart (or a
    # rolling update) waited for; it is skipped.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
