"""The application factory: wires settings, the database, the blob store and services."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware

from registry import logs, metrics
from registry.api.errors import HANDLERS
from registry.api.forwarded import ForwardedHeaders
from registry.api.limits import InFlight, RequestLimits
from registry.api.observe import Observe
from registry.api.routes import ROUTES
from registry.api.upstream_ns import UpstreamNamespace
from registry.config import Settings, host_patterns, load_settings, trusted_networks
from registry.proxy.upstream import hosts_of
from registry.web.routes import ROUTES as CONSOLE_ROUTES
from registry.wiring import Registry


def create_app(settings: Settings, *, served: bool = False) -> Starlette:
    """The app; `served`: the process serves it alone (`registry serve`), rather than
    beside others (tests)."""
    logs.stamp_request_ids()
    registry = Registry(settings)
    in_flight = InFlight()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Background work of every process: garbage collection shares its queue with
        # the other workers and replicas through the database.
        # Pull counts are flushed from memory by each process.
        metrics.forget_dead_workers()
        if registry.auth is not None:
            await registry.auth.configure()
        workers = [
            asyncio.create_task(registry.pulls.run()),
            asyncio.create_task(metrics.publish_forever()),
        ]
        if settings.gc.interval_seconds:
            workers.append(asyncio.create_task(registry.gc.run()))
        # Events of every process go out through the outbox (services/webhooks.py).
        if settings.webhooks.poll_seconds:
            workers.append(asyncio.create_task(registry.webhooks.run()))
        # Keys added anywhere are checked against the stored signatures (services/trust.py).
        workers.append(asyncio.create_task(registry.trust.run()))
        # Replication's queue is shared the same way (replication/worker.py).
        if settings.replication.poll_seconds:
            workers.append(asyncio.create_task(registry.replicator.run()))
        if served:
            # What the start made (modules, settings, the app, pools) lives as long as
            # the process: out of the collector's way, so that its full passes, which
            # walked all of it, stop stalling requests (manifest GET p99 at 64
            # connections: 91 ms before, 10 ms after; benchmarks/README.md). Not in a
            # process that makes many apps: what they leave in cycles would stay.
            gc.freeze()
        try:
            yield
        finally:
            # Requests a stop cancelled send their 503 before the process ends.
            await in_flight.ended(within=2)
            for worker in workers:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
            await registry.close()

    trusted = trusted_networks(settings.http.trusted_proxies)
    # Outermost first. Observe wraps the limits, so that their refusals (a query too
    # long, the 503 of a request a stop ended) carry the request ID and, on /v2, the API
    # version header, and are counted and logged like any answer.
    middleware = [
        Middleware(ForwardedHeaders, trusted=trusted),
        Middleware(Observe, access_log=settings.http.access_log),
        Middleware(RequestLimits, query_bytes=settings.limits.query_bytes, in_flight=in_flight),
    ]
    if settings.mirror.enabled:  # inside Observe: the access line has the name as asked
        hosts = hosts_of(settings.mirror.upstreams)
        allowed = host_patterns(settings.mirror.allow_hosts)
        middleware.append(Middleware(UpstreamNamespace, hosts=hosts, allowed=allowed))
    app = Starlette(
        routes=[*ROUTES, *CONSOLE_ROUTES],
        exception_handlers=HANDLERS,
        lifespan=lifespan,
        middleware=middleware,
    )
    app.state.registry = registry
    return app


def app_from_environment() -> Starlette:
    """Factory for `uvicorn --factory` and worker processes: settings from REGISTRY_*."""
    _end_with_parent()
    settings = load_settings()
    logs.configure(settings.log_level, settings.log_format)
    return create_app(settings, served=True)


def _end_with_parent() -> None:
    """A worker process is asked to stop (SIGTERM, so it drains) when the `registry
    serve` process that started it ends, even by kill -9 or the OOM killer: otherwise
    the orphaned workers keep the port, and the restarted registry cannot listen."""
    import ctypes
    import multiprocessing
    import os
    import signal

    parent = multiprocessing.parent_process()
    if parent is None:  # one process serves, or not uvicorn's worker: nothing to follow
        return
    with contextlib.suppress(OSError, AttributeError):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent.pid:  # the parent ended before the request was made
        os.kill(os.getpid(), signal.SIGTERM)
