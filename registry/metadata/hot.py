"""The statements on the hot path, sent through the driver's own connection: the lookups of
manifest GET/HEAD, blob HEAD and tag lists (one call into aiosqlite or asyncpg each), and
the writes of a blob upload. Measured under load, SQLAlchemy's per-statement work (greenlet
switches, statement building, result processing, a second thread hop to fetch) cost more
than SQLite took to answer: a one-row write transaction took 1.5 ms through it and 0.5 ms
here. Everything else uses queries.py; both read and write the same tables, and tests run
both on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from registry.metadata.database import Database
from registry.metadata.models import now as now_utc
from registry.metadata.queries import StoredManifest
from registry.metrics import query_duration, timed

_MANIFEST = "SELECT m.digest, m.media_type, m.content, m.repository_id, m.id FROM manifests m "
_SQL = {
    "manifest_by_tag": _MANIFEST + "JOIN tags t ON t.manifest_id = m.id "
    "JOIN repositories r ON r.id = t.repository_id WHERE r.name = :repository AND t.name = :tag",
    "manifest_by_digest": _MANIFEST + "JOIN repositories r ON r.id = m.repository_id "
    "WHERE r.name = :repository AND m.digest = :digest",
    # With whether the blob's lease lasts past `:fresh`: a HEAD renews it if not.
    "blob_size": "SELECT b.size, b.leased_until >= :fresh FROM blobs b "
    "JOIN repository_blobs l ON l.digest = b.digest "
    "JOIN repositories r ON r.id = l.repository_id "
    "WHERE r.name = :repository AND b.digest = :digest",
    # A blob held here, and whether this repository links it (the mirror links blobs that
    # another repository brought in once the upstream confirms this one has them).
    "cached_blob": "SELECT b.size, EXISTS (SELECT 1 FROM repository_blobs l "
    "JOIN repositories r ON r.id = l.repository_id "
    "WHERE r.name = :repository AND l.digest = b.digest) FROM blobs b WHERE b.digest = :digest",
    # Before bytes are placed at a digest's path: whether its row's lease lasts past
    # `:fresh` (NULL: no row), and whether garbage collection is deleting its bytes.
    "blob_lease": "SELECT (SELECT leased_until >= :fresh FROM blobs WHERE digest = :digest), "
    "EXISTS (SELECT 1 FROM blob_tombstones WHERE digest = :digest)",
    "upload_holder": "SELECT repository, writer FROM uploads WHERE id = :id",
    "tags_version": "SELECT id, tags_version FROM repositories WHERE name = :repository",
    # Tags in byte order, as the spec asks (PostgreSQL's default collation would not).
    # Compared in the order it sorts by: in the database's collation, a page after `last`
    # could skip or repeat tags (and no byte-order index would serve it, migration 0019).
    "tags_after": "SELECT name FROM tags WHERE repository_id = :repository_id "
    "AND name {collate} > :last ORDER BY name {collate} LIMIT :limit",
}
# A namespace's quota allows a blob of :size more, or it holds the blob already. Its
# usage is its folded total plus the deltas not folded yet (migration 0011).
_WITHIN_QUOTA = (
    "(SELECT quota_bytes FROM namespace_policies WHERE namespace = :namespace) IS NULL "
    "OR EXISTS (SELECT 1 FROM namespace_blobs WHERE namespace = :namespace "
    "AND digest = :digest) "
    "OR COALESCE((SELECT bytes FROM namespace_usage WHERE namespace = :namespace), 0) "
    "+ COALESCE((SELECT SUM(bytes) FROM usage_deltas WHERE namespace = :namespace), 0) "
    "+ :size <= (SELECT quota_bytes FROM namespace_policies WHERE namespace = :namespace)"
)
_NEW_BLOB = (
    "INSERT INTO blobs (digest, size, created_at, leased_until, gc_after) "
    "VALUES (:digest, :size, :now, :lease_end, :lease_end)"
)
# Writes; `:now` is the current time. Timestamps are bound in the form SQLAlchemy
# stores them.
_WRITES = {
    # Unless the owner has `limit` sessions open already. Two at once may both pass the
    # count, so an owner can exceed the limit by the requests it has in flight: the bound
    # is on what is left open, which is what costs.
    "create_upload": "INSERT INTO uploads (id, repository, owner, algorithm, created_at, "
    "updated_at) SELECT :id, :repository, :owner, :algorithm, :now, :now "
    "WHERE (SELECT count(*) FROM uploads WHERE owner = :owner) < :limit",
    # A request takes the session to write to it, unless another one holds it and showed
    # it is alive since `:stale`; with the saved hash (services/uploads.py).
    "claim_upload": "UPDATE uploads SET writer = :writer, writing_since = :now, "
    "updated_at = :now WHERE id = :id AND repository = :repository "
    "AND (writer IS NULL OR writing_since < :stale) RETURNING algorithm, hashed, hash_state",
    # The claim of a holder whose process has ended (services/uploads.py).
    "take_upload": "UPDATE uploads SET writer = :writer, writing_since = :now, "
    "updated_at = :now WHERE id = :id AND repository = :repository AND writer = :holder "
    "RETURNING algorithm, hashed, hash_state",
    "release_upload": "UPDATE uploads SET writer = NULL, writing_since = NULL, "
    "updated_at = :now, hashed = :hashed, hash_state = :hash_state "
    "WHERE id = :id AND writer = :writer",
    "delete_upload": "DELETE FROM uploads WHERE id = :id",
    # The namespace a push goes into, made by its first push (services/manifests.py):
    # its id if this made it, nothing if it was there (and no id of the sequence spent).
    "add_namespace": "INSERT INTO namespaces (name, public, created_at) "
    "SELECT :namespace, false, :now WHERE NOT EXISTS "
    "(SELECT 1 FROM namespaces WHERE name = :namespace) ON CONFLICT DO NOTHING RETURNING id",
    "add_owner": "INSERT INTO members (namespace_id, user_id, role) "
    "SELECT :namespace_id, id, 'owner' FROM users WHERE name = :user",
    "add_repository": "INSERT INTO repositories (name, namespace, created_at) "
    "VALUES (:repository, :namespace, :now) ON CONFLICT DO NOTHING",
    # A new blob is leased, and queued for garbage collection when its lease ends (if
    # nothing references it by then); one stored again has its lease renewed.
    "add_blob": _NEW_BLOB
    + " ON CONFLICT (digest) DO UPDATE SET leased_until = excluded.leased_until",
    # A lease renewed for a client that was told the repository has the blob; no row
    # changed means it has not (any more).
    "renew_linked": "UPDATE blobs SET leased_until = :lease_end WHERE digest = :digest "
    "AND EXISTS (SELECT 1 FROM repository_blobs l JOIN repositories r ON r.id = l.repository_id "
    "WHERE r.name = :repository AND l.digest = :digest)",
    # In a namespace with a quota, takes its policy row (after the blob's), so that its
    # uploads take turns and the quota check below sees every link before it: exact.
    "lock_quota": "UPDATE namespace_policies SET quota_bytes = quota_bytes "
    "WHERE namespace = :namespace AND quota_bytes IS NOT NULL",
    # Unless it would take the namespace past its quota (a blob it holds already costs
    # nothing); no row changed: over the quota, or linked already.
    "link_blob": "INSERT INTO repository_blobs (repository_id, digest, created_at) "
    "SELECT (SELECT id FROM repositories WHERE name = :repository), :digest, :now "
    "WHERE " + _WITHIN_QUOTA + " ON CONFLICT DO NOTHING",
    # The event of a blob push (metadata/events.py), if the repository links the blob
    # now: one row when the push stands, none when the quota refused the link.
    "record_linked_event": "INSERT INTO events (uid, created_at, action, outcome, actor, "
    "actor_kind, namespace, repository, address, body, dispatched) "
    "SELECT :uid, :created_at, :action, :outcome, :actor, :actor_kind, :namespace, "
    ":repository, :address, :body, :dispatched WHERE EXISTS (SELECT 1 FROM repository_blobs "
    "WHERE repository_id = (SELECT id FROM repositories WHERE name = :repository) "
    "AND digest = :digest)",
}
# A manifest's row: its columns, their values, and what a second push of it changes.
_MANIFEST_COLUMNS = (
    "(repository_id, digest, media_type, artifact_type, size, subject, config_digest, "
    "annotations, content, created_at, untagged_at)"
)
_MANIFEST_VALUES = (
    ":repository_id, :digest, :media_type, :artifact_type, :size, :subject, :config_digest, "
    ":annotations, :content, :now, :untagged_at"
)
_MANIFEST_AGAIN = (
    "ON CONFLICT (repository_id, digest) DO UPDATE SET untagged_at = CASE "
    "WHEN manifests.untagged_at IS NULL THEN NULL ELSE excluded.untagged_at END "
    "RETURNING id, created_at = :now"
)
_TAG_MOVES = (
    "SELECT m.digest FROM tags t JOIN manifests m ON m.id = t.manifest_id "
    "WHERE t.repository_id = :repository_id AND t.name = :tag AND t.manifest_id != :manifest_id"
)
# A manifest push (services/manifests.py), as one program of statements. A pair is its
# SQLite and PostgreSQL forms: a list parameter is JSON text for SQLite's json_each, an
# array for PostgreSQL, which also takes the row locks SQLite's one writer makes moot.
_PUSH: dict[str, str | tuple[str, str]] = {
    "repository_id": "SELECT id FROM repositories WHERE name = :repository",
    # Its id, and whether this statement inserted it (created_at is set only then). On
    # PostgreSQL a manifest that is tagged already, which the upsert would leave as it is,
    # is only read, FOR KEY SHARE: that keeps a deletion out until COMMIT, but not other
    # pushes of the same manifest, which the upsert's row lock made take turns for the
    # whole transaction (benchmarks/README.md, 2026-12-03).
    "put_manifest": (
        f"INSERT INTO manifests {_MANIFEST_COLUMNS} VALUES ({_MANIFEST_VALUES}) {_MANIFEST_AGAIN}",
        "WITH tagged AS (SELECT id FROM manifests WHERE repository_id = :repository_id "
        "AND digest = :digest AND untagged_at IS NULL FOR KEY SHARE), "
        f"put AS (INSERT INTO manifests {_MANIFEST_COLUMNS} SELECT {_MANIFEST_VALUES} "
        f"WHERE NOT EXISTS (SELECT 1 FROM tagged) {_MANIFEST_AGAIN}) "
        "SELECT id, false FROM tagged UNION ALL SELECT * FROM put",
    ),
    # Where a tag points, if elsewhere: one tag a statement, by both columns of its key,
    # since a plan PostgreSQL keeps for `name = ANY(array)` may scan every tag of the
    # repository (it did, 1.1 ms at 5,700 tags, once the statistics were stale).
    "tag_moves": (_TAG_MOVES, _TAG_MOVES + " FOR KEY SHARE OF m"),
    "linked_blobs": (
        "SELECT b.digest FROM blobs b JOIN repository_blobs l ON l.digest = b.digest "
        "WHERE l.repository_id = :repository_id AND b.digest IN (SELECT value FROM "
        "json_each(:digests)) ORDER BY b.digest",
        "SELECT b.digest FROM blobs b JOIN repository_blobs l ON l.digest = b.digest "
        "WHERE l.repository_id = :repository_id AND b.digest = ANY(:digests) "
        "ORDER BY b.digest FOR SHARE OF b",
    ),
    "held_manifests": (
        "SELECT digest FROM manifests WHERE repository_id = :repository_id "
        "AND digest IN (SELECT value FROM json_each(:digests)) ORDER BY digest",
        "SELECT digest FROM manifests WHERE repository_id = :repository_id "
        "AND digest = ANY(:digests) ORDER BY digest FOR SHARE",
    ),
    # The manifest's own bytes: keep() left their row a whole lease, and this transaction
    # links them, so a row there is not renewed (its lock would make pushes of the manifest
    # take turns until COMMIT).
    "add_manifest_blob": _NEW_BLOB + " ON CONFLICT (digest) DO NOTHING",
    "link_manifest_bytes": "INSERT INTO repository_blobs (repository_id, digest, created_at) "
    "VALUES (:repository_id, :digest, :now) ON CONFLICT DO NOTHING",
    "add_references": (
        "INSERT INTO manifest_references (manifest_id, digest, kind) SELECT :manifest_id, "
        "d.value, k.value FROM json_each(:digests) d JOIN json_each(:kinds) k ON k.key = d.key "
        "WHERE true ON CONFLICT DO NOTHING",
        "INSERT INTO manifest_references (manifest_id, digest, kind) SELECT :manifest_id, d, k "
        "FROM unnest(CAST(:digests AS text[]), CAST(:kinds AS text[])) AS r(d, k) "
        "ON CONFLICT DO NOTHING",
    ),
    "policy": "SELECT namespace, immutable_tags, retention, quota_bytes "
    "FROM namespace_policies WHERE namespace = :namespace",
    "set_tag": "INSERT INTO tags (repository_id, name, manifest_id, updated_at) VALUES "
    "(:repository_id, :tag, :manifest_id, :now) ON CONFLICT (repository_id, name) "
    "DO UPDATE SET manifest_id = excluded.manifest_id, updated_at = excluded.updated_at",
    # An immutable tag is set only if it points nowhere yet; then where it points.
    "add_tag": "INSERT INTO tags (repository_id, name, manifest_id, updated_at) VALUES "
    "(:repository_id, :tag, :manifest_id, :now) ON CONFLICT DO NOTHING",
    "tag_target": "SELECT manifest_id FROM tags WHERE repository_id = :repository_id "
    "AND name = :tag",
    "record_event": "INSERT INTO events (uid, created_at, action, outcome, actor, actor_kind, "
    "namespace, repository, address, body, dispatched) VALUES (:uid, :created_at, :action, "
    ":outcome, :actor, :actor_kind, :namespace, :repository, :address, :body, :dispatched)",
}
_SQL.update(_WRITES)
# Reads of one row by key, which SQLite answers on the event loop's thread (Database.
# read_now); a tag page, of any length, goes to aiosqlite's.
_POINT_LOOKUPS = frozenset(
    {
        "manifest_by_tag",
        "manifest_by_digest",
        "blob_size",
        "cached_blob",
        "blob_lease",
        "upload_holder",
        "tags_version",
    }
)
_PARAM = re.compile(r":(\w+)")
T = TypeVar("T")
# SQLAlchemy keeps SQLite's timestamps as text in this form; they are compared as text.
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"


@dataclass(frozen=True, slots=True)
class CachedBlob:
    size: int
    linked: bool  # to the repository asked about


def _positional(text: str, postgres: bool) -> tuple[str, list[str]]:
    """The statement with numbered (asyncpg) or `?` (sqlite3) parameters, and their names
    in order."""
    order: list[str] = []

    def number(match: re.Match[str]) -> str:
        order.append(match.group(1))
        return f"${len(order)}" if postgres else "?"

    return _PARAM.sub(number, text), order


def _sqlite_transaction(
    conn: sqlite3.Connection, statements: list[tuple[str, list[Any]]], done: Callable[[], None]
) -> tuple[int, list[Any]]:
    """BEGIN IMMEDIATE, the statements, COMMIT (autocommit connection: database.py), on the
    connection's own thread, then `done`; the rows the last statement changed, and those
    it returned."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for text, values in statements:
            cursor = conn.execute(text, values)
        returned = cursor.fetchall()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # a failed COMMIT (disk full) leaves it open too
            conn.execute("ROLLBACK")
        raise
    finally:
        done()
    return int(cursor.rowcount), returned


# A program: a generator that yields statements (a name and its parameters), is sent
# the rows each returns, and returns its result; run in one transaction by HotQueries.run.
Step = tuple[str, dict[str, Any]]
Program = Generator[Step, list[Any], T]
Compiler = Callable[[Step], tuple[str, list[Any]]]


def _sqlite_program(
    conn: sqlite3.Connection, program: Program[T], compiled: Compiler, done: Callable[[], None]
) -> T:
    """The whole program in one transaction on the connection's own thread, as
    _sqlite_transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        try:
            step = next(program)
            while True:
                step = program.send(conn.execute(*compiled(step)).fetchall())
        except StopIteration as ended:
            result: T = ended.value
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        done()
    return result


class HotQueries:
    def __init__(self, db: Database) -> None:
        self.db = db
        postgres = not db.is_sqlite
        self._sql = {
            name: _positional(text.format(collate='COLLATE "C"' if postgres else ""), postgres)
            for name, text in _SQL.items()
        }
        for name, forms in _PUSH.items():
            text = forms if isinstance(forms, str) else forms[postgres]
            self._sql[name] = _positional(text, postgres)

    async def run(self, program: Callable[[], Program[T]], label: str) -> T:
        """The statements `program()` yields, in one write transaction; its result. On
        PostgreSQL a program aborted to break a deadlock is made and run again."""
        if self.db.is_sqlite:
            compiled = self._compiler(now_utc())
            async with self.db.writer_turn(), self.db.driver() as driver:
                with timed(query_duration(label)):
                    return await driver._execute(
                        _sqlite_program, driver._conn, program(), compiled, self.db.let_writers_go
                    )

        async def once() -> T:
            steps, compiled = program(), self._compiler(now_utc())
            async with self.db.driver() as driver, driver.transaction():
                try:
                    step = next(steps)
                    while True:
                        step = steps.send(list(await driver.fetch(*_split(compiled(step)))))
                except StopIteration as done:
                    return done.value

        with timed(query_duration(label)):
            return await self.db.retrying(once)

    def _compiler(self, moment: datetime) -> Compiler:
        def compiled(step: Step) -> tuple[str, list[Any]]:
            name, params = step
            text, order = self._sql[name]
            given = {"now": moment, **params}
            return text, [self._bind(given[key]) for key in order]

        return compiled

    async def _rows(self, name: str, **params: Any) -> list[Any]:
        text, order = self._sql[name]
        values = [self._bind(params[key]) for key in order]
        if name in _POINT_LOOKUPS:
            start = time.perf_counter()
            found = self.db.read_now(text, values)
            if found is not None:
                query_duration(name).observe(time.perf_counter() - start)
                return found
        async with self.db.driver() as driver:
            start = time.perf_counter()
            if self.db.is_sqlite:
                rows = list(await driver.execute_fetchall(text, values))
            else:
                rows = list(await driver.fetch(text, *values))
            query_duration(name).observe(time.perf_counter() - start)
            return rows

    async def write(self, *steps: tuple[str, dict[str, Any]]) -> int:
        """Run write statements, in order, in one transaction; returns the rows the last
        one changed."""
        return (await self._write(steps))[0]

    async def write_returning(self, *steps: tuple[str, dict[str, Any]]) -> list[Any]:
        """As `write`; returns the rows the last statement's RETURNING gave."""
        return (await self._write(steps))[1]

    async def _write(self, steps: tuple[tuple[str, dict[str, Any]], ...]) -> tuple[int, list[Any]]:
        moment = now_utc()
        statements = []
        for name, params in steps:
            text, order = self._sql[name]
            given = {"now": moment, **params}
            statements.append((text, [self._bind(given[key]) for key in order]))
        label = "+".join(name for name, _ in steps)
        if not self.db.is_sqlite:
            with timed(query_duration(label)):
                return await self.db.retrying(lambda: self._postgres_write(statements))
        async with self.db.writer_turn(), self.db.driver() as driver:
            with timed(query_duration(label)):
                # The whole transaction in one call on the connection's thread: a call
                # is a hand-off there and back (80 us of CPU on this project's machines,
                # each), and the writer's turn is held for all of them. aiosqlite has no
                # public way to run a function there; _execute is how its own methods do.
                return await driver._execute(
                    _sqlite_transaction, driver._conn, statements, self.db.let_writers_go
                )

    async def _postgres_write(
        self, statements: list[tuple[str, list[Any]]]
    ) -> tuple[int, list[Any]]:
        *before, (last, last_values) = statements
        async with self.db.driver() as driver, driver.transaction():
            for text, values in before:
                await driver.execute(text, *values)
            if " RETURNING " in last:
                returned = list(await driver.fetch(last, *last_values))
                return len(returned), returned
            status = await driver.execute(last, *last_values)
        # asyncpg answers with the command tag: "INSERT 0 1", "UPDATE 3".
        return int(status.rsplit(" ", 1)[-1]), []

    def _bind(self, value: Any) -> Any:
        """A timestamp in the form SQLAlchemy stores it, and a list as JSON: text on
        SQLite."""
        if self.db.is_sqlite:
            if isinstance(value, datetime):
                return value.strftime(_SQLITE_TIME)
            if isinstance(value, list):
                return json.dumps(value)
        return value

    async def manifest_by_tag(self, repository: str, tag: str) -> StoredManifest | None:
        rows = await self._rows("manifest_by_tag", repository=repository, tag=tag)
        return _stored_manifest(rows[0]) if rows else None

    async def manifest_by_digest(self, repository: str, digest: str) -> StoredManifest | None:
        rows = await self._rows("manifest_by_digest", repository=repository, digest=digest)
        return _stored_manifest(rows[0]) if rows else None

    async def blob_size(
        self, repository: str, digest: str, fresh: datetime
    ) -> tuple[int, bool] | None:
        """The size of a blob the repository may serve, and whether its lease lasts past
        `fresh`."""
        rows = await self._rows("blob_size", repository=repository, digest=digest, fresh=fresh)
        return (int(rows[0][0]), bool(rows[0][1])) if rows else None

    async def blob_lease(self, digest: str, fresh: datetime) -> tuple[bool | None, bool]:
        """Whether the blob's lease lasts past `fresh` (None: no such blob), and whether
        it has a tombstone."""
        rows = await self._rows("blob_lease", digest=digest, fresh=fresh)
        leased, tombstoned = rows[0]
        return (None if leased is None else bool(leased)), bool(tombstoned)

    async def cached_blob(self, repository: str, digest: str) -> CachedBlob | None:
        rows = await self._rows("cached_blob", repository=repository, digest=digest)
        return CachedBlob(int(rows[0][0]), bool(rows[0][1])) if rows else None

    async def upload_holder(self, upload_id: str) -> tuple[str, str | None] | None:
        """The repository an upload session belongs to, and the writer holding it."""
        rows = await self._rows("upload_holder", id=upload_id)
        return (str(rows[0][0]), rows[0][1]) if rows else None

    async def tags_version(self, repository: str) -> tuple[int, int] | None:
        """The repository's id and the version of its tag list."""
        rows = await self._rows("tags_version", repository=repository)
        return (int(rows[0][0]), int(rows[0][1])) if rows else None

    async def tags_after(self, repository_id: int, last: str | None, limit: int) -> list[str]:
        rows = await self._rows(
            "tags_after", repository_id=repository_id, last=last or "", limit=limit
        )
        return [row[0] for row in rows]


def _split(compiled: tuple[str, list[Any]]) -> list[Any]:
    """asyncpg's arguments: the statement, then each value."""
    text, values = compiled
    return [text, *values]


def _stored_manifest(row: Any) -> StoredManifest:
    return StoredManifest(row[0], row[1], bytes(row[2]), int(row[3]), int(row[4]))
