"""The registry's parts, built once per application from its settings: the database,
the blob store, and the services every request handler and background worker uses.

Below the HTTP layers (api/, web/), which reach it through the request
(registry/requests.py), and above the services, the mirror and auth it assembles."""

from __future__ import annotations

from registry.auth.accounts import Accounts
from registry.auth.oidc import Provider
from registry.auth.sealed import Sealer, sealer_from_file
from registry.auth.service import AuthService
from registry.auth.sessions import ConsoleSessions
from registry.auth.tokens import authority_from_settings
from registry.config import Settings
from registry.metadata.database import Database
from registry.proxy.mirror import Mirror
from registry.replication.remotes import Remotes
from registry.replication.rules import Rules
from registry.replication.sides import Local
from registry.replication.worker import Replicator
from registry.services.audit import AuditLog
from registry.services.blobs import BlobService
from registry.services.browse import Browse
from registry.services.check import StorageCheck
from registry.services.dashboard import Dashboard
from registry.services.expiry import CacheExpiry
from registry.services.gc import GarbageCollector, worker_name
from registry.services.leases import Leases
from registry.services.listing import ListingService
from registry.services.manifests import ManifestService
from registry.services.policies import Policies
from registry.services.pulls import Pulls
from registry.services.readiness import Readiness
from registry.services.retention import RetentionService
from registry.services.sources import Stored
from registry.services.trust import Trust
from registry.services.uploads import UploadService
from registry.services.usage import Quotas, Usage
from registry.services.webhooks import Webhooks
from registry.storage import BlobStore, open_store


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
        self.stored = Stored(self.manifests, self.blobs)  # what a pull reads, unless mirrored
        self.listing = ListingService(self.db)
        self.audit = AuditLog(self.db)
        self.webhooks = Webhooks(self.db, settings.webhooks, settings.audit, worker_name())
        self.pulls = Pulls(self.db, self.webhooks, audit_pulls=settings.audit.pulls)
        self.browse = Browse(self.db, self.store)
        self.dashboard = Dashboard(self.db, self.uploads)
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
        self.readiness = Readiness(self.db, self.store, settings.storage.driver)
        self.sealer = sealer_from_file(settings.sealing_key_path)
        self.remotes = Remotes(self.db, self.sealer, settings.replication)
        mirror = settings.mirror
        self.trust = Trust(self.db, self.store)
        self.replication = Rules(self.db, not (mirror.enabled and mirror.mirror_only))
        self.webhooks.subscribers.append(self.replication)  # event-triggered rules
        self.replicator = Replicator(
            self.db,
            self.replication,
            self.remotes,
            Local(self.manifests, self.blobs, self.uploads, self.listing, self.trust),
            settings.replication,
            worker_name(),
        )
        self.auth = _auth_service(settings, self.db, self.sealer) if settings.auth.enabled else None
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
        await self.replicator.close()
        if self.mirror is not None:
            await self.mirror.close()
        if self.auth is not None and self.auth.provider is not None:
            await self.auth.provider.close()
        await self.store.close()
        await self.db.close()


def _auth_service(settings: Settings, db: Database, sealer: Sealer) -> AuthService:
    mirror = settings.mirror if settings.mirror.enabled else None
    directory = None
    if settings.auth.ldap.url:
        # ldap3 costs a worker 90 ms to import: only where a directory is set up.
        from registry.auth.ldap import Directory

        directory = Directory(settings.auth.ldap)
    tokens = authority_from_settings(settings)
    provider = None
    if settings.auth.oidc.issuer:
        provider = Provider(settings.auth.oidc, tokens.derived_key("oidc login"))
    return AuthService(settings.auth, Accounts(db, mirror), tokens, directory, provider, sealer)
