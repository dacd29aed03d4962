"""`registry serve` and `registry migrate`: the server, after its checks, and the schema."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import resource
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

from registry import __version__, listeners, metrics, preflight
from registry.auth.accounts import Accounts
from registry.auth.tokens import authority_from_settings
from registry.cli import config
from registry.cli.common import migrate
from registry.config import Settings
from registry.metadata.database import Database

log = logging.getLogger("registry")


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the registry (applies pending migrations first)",
        description="Run the registry: apply pending migrations, then serve /v2/, /token, "
        "/api/v1/ and the console. Settings come from their defaults, then --config's file, "
        "then REGISTRY_* variables, then these flags.",
        epilog=config.serve_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    serve.add_argument("--host", help="address to listen on (http.host, REGISTRY_HTTP_HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (http.port, REGISTRY_HTTP_PORT)")
    # It migrates itself, once the port is known to be free.
    serve.set_defaults(run=lambda s, a: _serve(s, a.config), migrates=None)
    migration = commands.add_parser(
        "migrate", help="apply pending database migrations and exit", parents=[common]
    )
    migration.set_defaults(run=lambda s, a: 0, migrates="loudly")


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
        log.info("mirroring %s from %s, %s", names, config.masked_url(upstream.url), login)
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
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    if settings.auth.enabled:
        # A bad key stops the start here, in one line, rather than in every worker.
        authority_from_settings(settings)
    if settings.storage.driver == "s3" and (problem := _check_s3(settings)):
        raise preflight.Unusable(f"storage.s3: {problem}")
    preflight.port(settings)
    migrate(settings)
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
    config = uvicorn.Config(
        "registry.app:app_from_environment",
        factory=True,
        host=settings.http.host,
        port=settings.http.port,
        workers=settings.http.workers,
        log_level=settings.log_level,
        # Logging is ours (registry/logs.py), in this process and in each worker; so is
        # the access line (api/observe.py).
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=settings.http.keepalive_seconds,
        timeout_graceful_shutdown=settings.http.drain_seconds,
        http="registry.server:GuardedProtocol",
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
    )
    with _metrics_folder(settings.http.workers):
        if config.workers > 1:
            # As uvicorn.run, but each worker listens on a socket of its own
            # (registry/listeners.py).
            reserved = listeners.reserve(settings.http.host, settings.http.port)
            Multiprocess(config, sockets=[reserved]).run()
        else:
            server = uvicorn.Server(config)
            server.run()
            if not server.started:
                sys.exit(STARTUP_FAILURE)
    # Served and stopped, workers joined, the metrics folder gone: only logs and
    # standard streams are left to write. The interpreter's own teardown of everything
    # the start loaded took up to 1 s of CPU after this point, which a restart (or a
    # rolling update) waited for; it is skipped.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
