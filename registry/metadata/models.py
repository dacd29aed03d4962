"""Tables of the metadata index. The schema is created only by migrations/ (Alembic);
tests/unit/test_migrations.py proves the models and the migrations agree."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Digests are at most "sha512:" + 128 hex characters.
DIGEST = String(160)
NAME = String(255)
# Ids of tables that grow without end (SQLite's INTEGER PRIMARY KEY is 64-bit already).
ID = BigInteger().with_variant(Integer(), "sqlite")


def now() -> datetime:
    return datetime.now(UTC)


def utc(moment: datetime) -> datetime:
    """A timestamp as read back: SQLite returns them without their zone, which is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


# Indexes in the byte order the spec lists names and tags in (COLLATE "C"), made by
# migration 0019 on PostgreSQL only: SQLite's own indexes are in that order already.
POSTGRESQL_ONLY_INDEXES = frozenset(
    {"ix_repositories_name_bytes", "ix_tags_repository_id_name_bytes"}
)


class Repository(Base):
    __tablename__ = "repositories"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(NAME, unique=True)
    namespace: Mapped[str] = mapped_column(NAME, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    # Set to a new random value by triggers whenever a tag of the repository is added,
    # renamed or removed (migration 0005); cached tag lists are checked against it.
    tags_version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Its namespace's signature policy (namespace_policies), copied here for the manifest
    # GET, which reads this row anyway: set when the policy is, and when the repository
    # is made (metadata/repositories.py says how the two cannot miss each other).
    signature_policy: Mapped[str] = mapped_column(String(8), default="off", server_default="off")


class Blob(Base):
    """Content known to the registry, shared by every repository that links it."""

    __tablename__ = "blobs"
    digest: Mapped[str] = mapped_column(DIGEST, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    # Kept until then whatever references it (an upload, a mount or a push's check renews
    # it); and when garbage collection should look at it next, NULL for no need. Triggers
    # set gc_after when a reference or a manifest stored as this blob goes (migration 0007).
    leased_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    gc_after: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)


class RepositoryBlob(Base):
    """A repository may serve a blob only through a link: the unit of access and mount."""

    __tablename__ = "repository_blobs"
    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True
    )
    digest: Mapped[str] = mapped_column(ForeignKey("blobs.digest"), primary_key=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class Manifest(Base):
    """A manifest in a repository. Its bytes are kept here as well as in the blob store,
    so a manifest GET is one indexed query and no storage read."""

    __tablename__ = "manifests"
    __table_args__ = (
        UniqueConstraint("repository_id", "digest"),
        Index("ix_manifests_repository_id_subject", "repository_id", "subject"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    # Indexed: garbage collection asks whether any repository holds a manifest as a blob.
    digest: Mapped[str] = mapped_column(DIGEST, index=True)
    media_type: Mapped[str] = mapped_column(NAME)
    artifact_type: Mapped[str | None] = mapped_column(NAME)
    size: Mapped[int] = mapped_column(BigInteger)
    subject: Mapped[str | None] = mapped_column(DIGEST)
    config_digest: Mapped[str | None] = mapped_column(DIGEST)
    # JSON text of the manifest's annotations, for referrers descriptors.
    annotations: Mapped[str | None] = mapped_column(Text)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    # Since when no tag points at it (NULL: tagged); kept by triggers on tags (migration
    # 0009), for the untagged-manifest policy.
    untagged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    # A trusted key signed it, or an index of its repository that a trusted key signed
    # lists it: kept with the verdicts (metadata/trust.py), read by a manifest GET.
    signed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class ManifestReference(Base):
    """What a manifest points at: config and layer blobs, child manifests."""

    __tablename__ = "manifest_references"
    manifest_id: Mapped[int] = mapped_column(
        ForeignKey("manifests.id", ondelete="CASCADE"), primary_key=True
    )
    digest: Mapped[str] = mapped_column(DIGEST, primary_key=True, index=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)


class Tag(Base):
    __tablename__ = "tags"
    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    manifest_id: Mapped[int] = mapped_column(
        ForeignKey("manifests.id", ondelete="CASCADE"), index=True
    )
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)

    __table_args__ = (Index("ix_tags_repository_id_updated_at", "repository_id", "updated_at"),)


class RepositoryPulls(Base):
    """How often a repository's manifests were pulled (GET), and when last (services/pulls.py)."""

    __tablename__ = "repository_pulls"
    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True
    )
    pulls: Mapped[int] = mapped_column(BigInteger)
    last_pulled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ManifestPulls(Base):
    """The same per manifest: a tag's last pull is that of the manifest it points at."""

    __tablename__ = "manifest_pulls"
    manifest_id: Mapped[int] = mapped_column(
        ForeignKey("manifests.id", ondelete="CASCADE"), primary_key=True
    )
    pulls: Mapped[int] = mapped_column(BigInteger)
    last_pulled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Upload(Base):
    """An upload session; its bytes so far are in the blob store under its id."""

    __tablename__ = "uploads"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    repository: Mapped[str] = mapped_column(NAME)
    # The account that opened it (a client address with auth off): limits.upload_sessions.
    owner: Mapped[str] = mapped_column(String(128), index=True, server_default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    # The running hash (registry/hashstate.py) of the first `hashed` bytes, in the
    # session's algorithm, saved after each chunk for whichever process takes the next
    # (migration 0018). NULL: the bytes are hashed again at the closing PUT.
    algorithm: Mapped[str] = mapped_column(String(16), server_default="sha256")
    hashed: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    hash_state: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # The request writing to the session now (its process, registry/process.py, and a
    # random part), and when its process last renewed the claim: one at a time
    # (services/uploads.py).
    writer: Mapped[str | None] = mapped_column(String(255), nullable=True)
    writing_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


# Accounts and access


class User(Base):
    """A person. `source` says who proves who they are: this registry (`local`, with an
    argon2 `password_hash`), a directory (`ldap`, `external_id` their DN) or an OpenID
    provider (`oidc`, `external_id` the issuer and subject). An external account's
    `password_hash` holds no password: a random marker, renewed when it is disabled,
    whose fingerprint its refresh tokens carry."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("source", "external_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    source: Mapped[str] = mapped_column(String(16), default="local", server_default="local")
    external_id: Mapped[str | None] = mapped_column(String(512))
    # An OpenID provider's refresh token, sealed (auth/sealed.py): asked at token
    # requests whether the provider still knows the user, and their groups.
    external_refresh: Mapped[str | None] = mapped_column(Text)


class UserGroup(Base):
    """A group an external user belonged to when their source last said (at a login, a
    token request, or a refresh): what group roles are looked up by."""

    __tablename__ = "user_groups"
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    group_name: Mapped[str] = mapped_column(String(512), primary_key=True)


class GroupRole(Base):
    """A role that members of a directory's or provider's group hold: in `namespace`, or
    admin everywhere (`namespace` empty, `role` admin). `origin` is config (rewritten at
    every start from the settings) or api (made by an admin or the namespace's owner).
    The namespace is named, not referenced, so that a mapping in the settings may name a
    namespace made later; deleting a namespace deletes its mappings."""

    __tablename__ = "group_roles"
    __table_args__ = (UniqueConstraint("source", "group_name", "namespace"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(16))
    group_name: Mapped[str] = mapped_column(String(512))
    namespace: Mapped[str] = mapped_column(NAME, index=True)
    role: Mapped[str] = mapped_column(String(16))
    origin: Mapped[str] = mapped_column(String(16))


class PersonalToken(Base):
    """A user's personal access token, the password of `docker login` for CI: a random
    secret stored as its SHA-256, limited to `scopes` (JSON: [[namespace pattern,
    "pull,push"], ...]) within what its owner may do, until `expires_at`."""

    __tablename__ = "personal_tokens"
    __table_args__ = (UniqueConstraint("user_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    secret_digest: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_from: Mapped[str | None] = mapped_column(String(64))


class Namespace(Base):
    """The first component of repository names; the unit of visibility and membership."""

    __tablename__ = "namespaces"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(NAME, unique=True)
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class Member(Base):
    __tablename__ = "members"
    namespace_id: Mapped[int] = mapped_column(
        ForeignKey("namespaces.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String(16))


class Robot(Base):
    """A machine account (`robot$team+ci`). Its secret is random and long, so a SHA-256
    digest of it is as safe to store as a slow hash and costs nothing to check."""

    __tablename__ = "robots"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    secret_digest: Mapped[str] = mapped_column(String(64))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class RobotGrant(Base):
    """What a robot may do in one namespace: a comma-separated subset of pull,push,delete."""

    __tablename__ = "robot_grants"
    robot_id: Mapped[int] = mapped_column(
        ForeignKey("robots.id", ondelete="CASCADE"), primary_key=True
    )
    namespace_id: Mapped[int] = mapped_column(
        ForeignKey("namespaces.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    actions: Mapped[str] = mapped_column(String(64))


class RobotPattern(Base):
    """What a robot made by an admin may do in every namespace whose name matches a glob
    (`*`, `team-*`): kept as the LIKE pattern the access query matches with, beside the
    glob it was given."""

    __tablename__ = "robot_patterns"
    robot_id: Mapped[int] = mapped_column(
        ForeignKey("robots.id", ondelete="CASCADE"), primary_key=True
    )
    pattern: Mapped[str] = mapped_column(NAME, primary_key=True)
    like: Mapped[str] = mapped_column(String(512))
    actions: Mapped[str] = mapped_column(String(64))


class LoginFailure(Base):
    """Failed logins of one account from one address since `first_at`: shared by every
    replica, so the limit holds however many there are."""

    __tablename__ = "login_failures"
    account: Mapped[str] = mapped_column(String(128), primary_key=True)
    client: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    count: Mapped[int] = mapped_column(Integer)


class BlobFetch(Base):
    """A blob the mirror is fetching from an upstream right now, into upload `upload_id`.
    The row makes the fetch single across replicas: whoever inserts it fetches, everyone
    else reads the upload as `written` grows. A `heartbeat_at` gone stale means the
    fetcher died, and the next asker takes over."""

    __tablename__ = "blob_fetches"
    digest: Mapped[str] = mapped_column(DIGEST, primary_key=True)
    upload_id: Mapped[str] = mapped_column(String(36))
    size: Mapped[int | None] = mapped_column(BigInteger)
    written: Mapped[int] = mapped_column(BigInteger, default=0)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class Counter(Base):
    """Totals summed over every replica: the mirror's (hits, misses, upstream errors,
    bytes) and garbage collection's (`gc_` names)."""

    __tablename__ = "counters"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


# Garbage collection


class BlobTombstone(Base):
    """A blob whose row garbage collection removed and whose bytes it is deleting; a new
    upload of the digest waits until it is gone (registry/services/leases.py)."""

    __tablename__ = "blob_tombstones"
    digest: Mapped[str] = mapped_column(DIGEST, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    # The collection pass's, which deletes the bytes of its own tombstones only.
    token: Mapped[str] = mapped_column(String(36), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class GcHold(Base):
    """The one row (id 1) that holds garbage collection's deletions while `until` is
    ahead: a backup's, between the database dump and the copy of the blobs."""

    __tablename__ = "gc_hold"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Who holds it (cli:user@host), for the operator who wonders why nothing is freed.
    holder: Mapped[str] = mapped_column(String(255), server_default="")


class MirrorUpstream(Base):
    """What an upstream (by its prefix) last said of its rate limit, and until when the
    mirror leaves it alone after a 429 (migration 0017)."""

    __tablename__ = "mirror_upstreams"
    prefix: Mapped[str] = mapped_column(String(255), primary_key=True)
    ratelimit_limit: Mapped[int | None] = mapped_column(BigInteger)
    ratelimit_remaining: Mapped[int | None] = mapped_column(BigInteger)
    seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    backoff_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class GcRun(Base):
    """What one collection pass did (passes that found nothing to do are not kept)."""

    __tablename__ = "gc_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    seconds: Mapped[float] = mapped_column(Float)
    # host:pid of the process, or "cli".
    worker: Mapped[str] = mapped_column(String(128))
    blobs_deleted: Mapped[int] = mapped_column(Integer)
    bytes_freed: Mapped[int] = mapped_column(BigInteger)
    manifests_deleted: Mapped[int] = mapped_column(Integer)
    uploads_ended: Mapped[int] = mapped_column(Integer)
    # Blobs due for a look that a lease still held.
    postponed: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)


class NamespacePolicy(Base):
    """A namespace's storage-lifecycle rules (services/policies.py), by namespace name."""

    __tablename__ = "namespace_policies"
    namespace: Mapped[str] = mapped_column(NAME, primary_key=True)
    # JSON: a list of glob patterns of tags that may be neither moved nor deleted.
    immutable_tags: Mapped[str] = mapped_column(Text, default="[]", server_default="[]")
    # JSON: the retention policy (services/policies.py Retention), or NULL for none.
    retention: Mapped[str | None] = mapped_column(Text)
    quota_bytes: Mapped[int | None] = mapped_column(BigInteger)
    # off, audit (unsigned pulls served and recorded) or enforce (refused)
    signature_policy: Mapped[str] = mapped_column(String(8), default="off", server_default="off")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class NamespaceBlob(Base):
    """How many of a namespace's repositories link a blob; kept by triggers on
    repository_blobs (migration 0011), which add a UsageDelta when it goes from 0 or to 0."""

    __tablename__ = "namespace_blobs"
    namespace: Mapped[str] = mapped_column(NAME, primary_key=True)
    digest: Mapped[str] = mapped_column(DIGEST, primary_key=True)
    links: Mapped[int] = mapped_column(Integer)


class UsageDelta(Base):
    """A change of a namespace's bytes, appended by the triggers (never updated, so that
    pushes do not wait on one another) until garbage collection folds it into
    NamespaceUsage."""

    __tablename__ = "usage_deltas"
    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    namespace: Mapped[str] = mapped_column(NAME, index=True)
    bytes: Mapped[int] = mapped_column(BigInteger)


class NamespaceUsage(Base):
    """Bytes a namespace holds, each blob once, as of the last fold of its deltas."""

    __tablename__ = "namespace_usage"
    namespace: Mapped[str] = mapped_column(NAME, primary_key=True)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class DailyActivity(Base):
    """Per UTC day and namespace, for the console's dashboard (migration 0021): pulls, added
    by each flush of the pull counts (services/pulls.py), and the bytes stored, as the
    collection worker's fold of the usage deltas left them that day (metadata/usage.py).
    Both write the rows in namespace order."""

    __tablename__ = "daily_activity"
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    namespace: Mapped[str] = mapped_column(NAME, primary_key=True)
    pulls: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    stored_bytes: Mapped[int | None] = mapped_column(BigInteger)


class ConsoleSession(Base):
    """A login to the web console (registry.auth.sessions.py)."""

    __tablename__ = "console_sessions"
    # SHA-256 (hex) of the cookie's secret.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account: Mapped[str] = mapped_column(NAME)
    # The account's credential fingerprint at login: a change ends the session.
    credential: Mapped[str] = mapped_column(Text)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class Event(Base):
    """A change of state, or an attempt at one: the audit log, and the outbox of webhook
    deliveries (written in the transaction of the change; services/webhooks.py fans it
    out to the endpoints that want it and sets `dispatched`)."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    # The event's id in payloads (a UUID), which receivers deduplicate by.
    uid: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    action: Mapped[str] = mapped_column(String(40), index=True)
    # success, failure or denied
    outcome: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(NAME, index=True)
    actor_kind: Mapped[str] = mapped_column(String(16))
    namespace: Mapped[str | None] = mapped_column(NAME, index=True)
    repository: Mapped[str | None] = mapped_column(NAME)
    address: Mapped[str | None] = mapped_column(String(64))
    # JSON: the event as webhooks send it (Distribution's notification event).
    body: Mapped[str] = mapped_column(Text)
    dispatched: Mapped[bool] = mapped_column(Boolean, default=False)
    __table_args__ = (
        Index(
            "ix_events_undispatched",
            "id",
            sqlite_where=text("dispatched = 0"),
            postgresql_where=text("dispatched = false"),
        ),
    )


class Webhook(Base):
    """An endpoint that receives events: a namespace's (its owners manage it) or, with
    no namespace, a global one (admins)."""

    __tablename__ = "webhooks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace: Mapped[str | None] = mapped_column(NAME, index=True)
    url: Mapped[str] = mapped_column(Text)
    # JSON: the actions it wants (push, pull, delete, ...).
    events: Mapped[str] = mapped_column(Text)
    # Glob patterns of repository names and tags; NULL: any.
    repositories: Mapped[str | None] = mapped_column(String(255))
    tags: Mapped[str | None] = mapped_column(String(255))
    # The HMAC key of X-Registry-Signature; returned once, when made.
    secret: Mapped[str] = mapped_column(Text)
    # distribution (the notifications envelope) or cloudevents
    format: Mapped[str] = mapped_column(String(16))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(NAME)


class WebhookDelivery(Base):
    """One event to send to one endpoint: sent in id order per endpoint, one at a time,
    by whichever process holds its lease."""

    __tablename__ = "webhook_deliveries"
    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event_uid: Mapped[str] = mapped_column(String(36))
    action: Mapped[str] = mapped_column(String(40))
    # The body as sent (and signed): the same bytes on every attempt.
    body: Mapped[str] = mapped_column(Text)
    # pending, delivered or failed
    state: Mapped[str] = mapped_column(String(12))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    leased_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    leased_by: Mapped[str | None] = mapped_column(String(128))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (
        Index("ix_webhook_deliveries_webhook_id_state_id", "webhook_id", "state", "id"),
        # What the worker looks for: the pending ones, a few among many delivered.
        Index(
            "ix_webhook_deliveries_pending",
            "next_attempt_at",
            sqlite_where=text("state = 'pending'"),
            postgresql_where=text("state = 'pending'"),
        ),
        # What every scrape of /metrics counts, with the pending ones.
        Index(
            "ix_webhook_deliveries_failed",
            "webhook_id",
            sqlite_where=text("state = 'failed'"),
            postgresql_where=text("state = 'failed'"),
        ),
    )


class WebhookAttempt(Base):
    """The delivery log: one row per attempt to send a delivery."""

    __tablename__ = "webhook_attempts"
    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The HTTP status, or NULL when none came (the error says why).
    status: Mapped[int | None] = mapped_column(Integer)
    seconds: Mapped[float] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    # The first KiB of the answer.
    response: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str] = mapped_column(String(128))
    __table_args__ = (Index("ix_webhook_attempts_webhook_id_id", "webhook_id", "id"),)


class Remote(Base):
    """Another registry that replication copies to or from: a namespace owner's (in
    `namespace`) or an admin's (`namespace` empty). `secret` is the password sealed with
    the sealing key (auth/sealed.py), never shown again."""

    __tablename__ = "remotes"
    __table_args__ = (UniqueConstraint("namespace", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace: Mapped[str] = mapped_column(NAME)
    name: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(2048))
    username: Mapped[str | None] = mapped_column(String(255))
    secret: Mapped[str | None] = mapped_column(Text)
    verify_tls: Mapped[bool] = mapped_column(Boolean, default=True)
    ca_pem: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class ReplicationRule(Base):
    """What to copy between here and a remote: a namespace owner's (`namespace`) or an
    admin's (`namespace` empty). Filters are JSON lists of globs, `!` excluding."""

    __tablename__ = "replication_rules"
    __table_args__ = (UniqueConstraint("namespace", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace: Mapped[str] = mapped_column(NAME)
    name: Mapped[str] = mapped_column(String(64))
    # push (here to the remote) or pull (the remote to here)
    direction: Mapped[str] = mapped_column(String(8))
    remote_id: Mapped[int] = mapped_column(ForeignKey("remotes.id"))
    repositories: Mapped[str] = mapped_column(Text)
    tags: Mapped[str] = mapped_column(Text)
    # JSON: of image, index, artifact
    kinds: Mapped[str] = mapped_column(Text)
    # Where copies go: a namespace or path prefixed to each name, after `strip` of its
    # leading components are dropped; empty: the same names.
    destination: Mapped[str] = mapped_column(NAME)
    strip: Mapped[int] = mapped_column(Integer, default=0)
    overwrite: Mapped[bool] = mapped_column(Boolean, default=True)
    deletions: Mapped[bool] = mapped_column(Boolean, default=False)
    # manual, schedule (cron in `schedule`) or event
    trigger: Mapped[str] = mapped_column(String(16))
    schedule: Mapped[str | None] = mapped_column(String(120))
    next_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Bytes per second a run sends or fetches, over all its blobs; 0: no limit.
    bandwidth: Mapped[int] = mapped_column(BigInteger, default=0)
    blobs_at_once: Mapped[int] = mapped_column(Integer, default=4)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    created_by: Mapped[str] = mapped_column(NAME)
    # Copy only images a key that this side's namespace trusts has signed.
    signed_only: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class ReplicationRun(Base):
    """One pass of a rule: `planning` (its items are being listed, under a lease),
    `running`, then `succeeded` or `failed` (some item failed after its retries)."""

    __tablename__ = "replication_runs"
    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    rule_id: Mapped[int] = mapped_column(
        ForeignKey("replication_rules.id", ondelete="CASCADE"), index=True
    )
    # manual, schedule, event or retry
    trigger: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    created_by: Mapped[str] = mapped_column(NAME)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    worker: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)


class ReplicationItem(Base):
    """One thing a run copies (a tag or digest of a repository, with what it references
    and its referrers) or deletes, claimed under a lease by one process at a time."""

    __tablename__ = "replication_items"
    __table_args__ = (
        Index("ix_replication_items_run_id", "run_id", "state"),
        Index("ix_replication_items_due", "state", "next_attempt_at"),
        Index(
            "ix_replication_items_pending",
            "rule_id",
            "repository",
            "reference",
            "action",
            unique=True,
            sqlite_where=text("state = 'pending'"),
            postgresql_where=text("state = 'pending'"),
        ),
    )
    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("replication_runs.id", ondelete="CASCADE"))
    rule_id: Mapped[int] = mapped_column(Integer)
    # copy or delete
    action: Mapped[str] = mapped_column(String(8))
    repository: Mapped[str] = mapped_column(NAME)  # at the source
    reference: Mapped[str] = mapped_column(String(160))  # a tag or a digest
    destination: Mapped[str] = mapped_column(NAME)  # the repository it goes to
    # pending, running, copied, skipped or failed
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    worker: Mapped[str | None] = mapped_column(String(64))
    digest: Mapped[str | None] = mapped_column(DIGEST)  # what the reference named
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)  # sent or fetched
    error: Mapped[str | None] = mapped_column(Text)  # why it failed, or was skipped
    # When the change an event-triggered item copies happened (for the lag).
    event_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ReplicationUpload(Base):
    """Where a blob's upload to a remote stands: its session's URL there, so that a copy
    interrupted (a fault, a restart, another process) asks it for its offset and goes
    on from there."""

    __tablename__ = "replication_uploads"
    item_id: Mapped[int] = mapped_column(
        ForeignKey("replication_items.id", ondelete="CASCADE"), primary_key=True
    )
    digest: Mapped[str] = mapped_column(DIGEST, primary_key=True)
    location: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TrustedKey(Base):
    """A public key whose signatures a namespace's (or, with `namespace` empty, every
    namespace's) signature policy trusts. `scanned_at` is empty until a worker has
    checked the signatures already stored against it."""

    __tablename__ = "trusted_keys"
    __table_args__ = (
        UniqueConstraint("namespace", "name"),
        UniqueConstraint("namespace", "fingerprint"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace: Mapped[str] = mapped_column(NAME)
    name: Mapped[str] = mapped_column(String(64))
    algorithm: Mapped[str] = mapped_column(String(32))
    # sha256 of the key's SubjectPublicKeyInfo DER
    fingerprint: Mapped[str] = mapped_column(String(80))
    pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    created_by: Mapped[str] = mapped_column(NAME)
    scanned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    scan_lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SignatureVerdict(Base):
    """A trusted key signed this manifest (of its repository), by the signature manifest
    `signature`; gone with the key or the manifest."""

    __tablename__ = "signature_verdicts"
    manifest_id: Mapped[int] = mapped_column(
        ForeignKey("manifests.id", ondelete="CASCADE"), primary_key=True
    )
    key_id: Mapped[int] = mapped_column(
        ForeignKey("trusted_keys.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    signature: Mapped[str] = mapped_column(DIGEST)
    verified_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
