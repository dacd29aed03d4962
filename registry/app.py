"""The application factory: wires settings, the database, the blob store and services."""

from __future__ import annotations

import asyncio
import contextlib
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
from registry.auth.accounts import Accounts
from registry.auth.service import AuthService
from registry.auth.tokens import authority_from_settings
from registry.config import Settings, host_patterns, load_settings, trusted_networks
from registry.metadata.database import Database
from registry.proxy.mirror import Mirror
from registry.proxy.upstream import hosts_of
from registry.services.audit import AuditLog
from registry.services.blobs import BlobService
from registry.services.browse import Browse
from registry.services.check import StorageCheck
from registry.services.expiry import CacheExpiry
from registry.services.gc import GarbageCollector, worker_name
from registry.services.leases import Leases
from registry.services.listing import ListingService
from registry.services.manifests import ManifestService
from registry.services.policies import Policies
from registry.services.pulls import Pulls
from registry.services.retention import RetentionService
from registry.services.uploads import UploadService
from registry.services.usage import Quotas, Usage
from registry.services.webhooks import Webhooks
from registry.storage import BlobStore, open_store
from registry.web.routes import ROUTES as CONSOLE_ROUTES
from registry.web.sessions import ConsoleSessions


class Registry:
    """Everything a request handler may use, built once per application."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(
            settings.database_url,
            pool_size=settings.database.pool_size,
            echo=settings.database.echo,
            timeout_seconds=settings.database.timeout_seconds,
        )
        self.store: BlobStore = open_store(settings)
        leases = Leases(self.db, settings.gc.blob_lease_seconds)
        quotas = Quotas(self.db)
        self.usage = Usage(self.db)
        self.blobs = BlobService(
            self.db, self.store, leases, quotas, settings.storage.accel_redirect
        )
        self.uploads = UploadService(
            self.db,
            self.store,
            leases,
            quotas,
            max_sessions=settings.limits.upload_sessions,
        )
        self.policies = Policies(self.db)
        self.manifests = ManifestService(
            self.db, self.store, leases, sparse=settings.sparse_manifests, limits=settings.limits
        )
        self.listing = ListingService(self.db)
        self.audit = AuditLog(self.db)
        self.webhooks = Webhooks(self.db, settings.webhooks, settings.audit, worker_name())
        self.pulls = Pulls(self.db, self.webhooks, audit_pulls=settings.audit.pulls)
        self.browse = Browse(self.db, self.store)
        self.retention = RetentionService(self.db)
        self.gc = GarbageCollector(
            self.db,
            self.store,
            self.uploads,
            self.retention,
            settings.gc,
            CacheExpiry(self.db, settings.mirror) if settings.mirror.enabled else None,
        )
        self.check = StorageCheck(self.db, self.store, leases)
        self.auth = _auth_service(settings, self.db) if settings.auth.enabled else None
        self.console = (
            ConsoleSessions(self.db, self.auth, settings.auth.console_session_hours)
            if self.auth is not None
            else None
        )
        self.mirror = (
            Mirror(
                settings.mirror,
                self.db,
                self.store,
                self.blobs,
                self.manifests,
                leases,
                settings.manifest_max_bytes,
            )
            if settings.mirror.enabled
            else None
        )

    async def close(self) -> None:
        await self.uploads.close()
        await self.webhooks.close()
        if self.mirror is not None:
            await self.mirror.close()
        await self.store.close()
        await self.db.close()


def _auth_service(settings: Settings, db: Database) -> AuthService:
    mirror = settings.mirror if settings.mirror.enabled else None
    return AuthService(settings.auth, Accounts(db, mirror), authority_from_settings(settings))


def create_app(settings: Settings) -> Starlette:
    logs.stamp_request_ids()
    registry = Registry(settings)
    in_flight = InFlight()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Background work of every process: garbage collection shares its queue with
        # the other workers and replicas through the database.
        # Pull counts are flushed from memory by each process.
        metrics.forget_dead_workers()
        workers = [
            asyncio.create_task(registry.pulls.run()),
            asyncio.create_task(metrics.publish_forever()),
        ]
        if settings.gc.interval_seconds:
            workers.append(asyncio.create_task(registry.gc.run()))
        # Events of every process go out through the outbox (services/webhooks.py).
        if settings.webhooks.poll_seconds:
            workers.append(asyncio.create_task(registry.webhooks.run()))
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
    middleware = [
        Middleware(RequestLimits, query_bytes=settings.limits.query_bytes, in_flight=in_flight),
        Middleware(ForwardedHeaders, trusted=trusted),
        Middleware(Observe, access_log=settings.http.access_log),
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
    return create_app(settings)


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
