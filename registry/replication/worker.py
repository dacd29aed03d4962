"""The replication worker of every `registry serve` process: it starts the runs of due
schedules, plans runs (lists what a rule selects, queues an item per tag), and copies
items, `replication.concurrency` at a time.

Any process may take any step, and none is done twice at once:

- a schedule is started by the one process that moves its next time on (a compare and
  set on the rule's row);
- a run is planned under a lease on its row, and its items are queued in the
  transaction that ends the planning, so a planner that dies leaves nothing half done;
- an item is claimed under a lease (metadata/replication.py: SKIP LOCKED on PostgreSQL,
  the writer lock on SQLite), renewed while the copy goes on; an item whose rule,
  repository and reference another process copies waits for it. A process killed
  mid-copy leaves its lease to run out; another then claims the item and goes on, a
  blob's upload from the offset the remote reports (replication/sides.py). A process
  that finds its lease taken (it stalled past it) stops that copy.
- an item's attempt is settled only by the worker holding it (the settle checks), and
  the run ends in the same transaction as its last item.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

import httpx
from sqlalchemy.ext.asyncio import AsyncConnection

from registry import context
from registry.config import ReplicationSettings
from registry.errors import RegistryError
from registry.kept import keeper
from registry.metadata import replication as q
from registry.metadata import trust as trust_queries
from registry.metadata.database import Database
from registry.metadata.models import now
from registry.metrics import REPLICATION_BYTES, REPLICATION_ITEMS, REPLICATION_LAG
from registry.names import namespace_of
from registry.proxy.upstream import UpstreamError
from registry.replication.client import RemoteRegistry
from registry.replication.copy import Copy, CopyFailed, Mounts, Outcome, Throttle, Trusted
from registry.replication.filters import Filter, destination_name
from registry.replication.remotes import Remotes
from registry.replication.rules import Rules, finish, plan
from registry.replication.sides import Local, Remote, Sink, Source
from registry.signatures import KeyInvalid, load_key
from registry.storage.base import StorageError

log = logging.getLogger("registry.replication")

# What a failed attempt may raise: anything else is a bug, logged with its traceback.
FAILURES = (CopyFailed, UpstreamError, RegistryError, StorageError, httpx.HTTPError, OSError)


@dataclass
class _Connected:
    """A remote's client, kept while its rules run in this process."""

    remote: Remote
    http: httpx.AsyncClient
    mounts: Mounts


class Replicator:
    def __init__(
        self,
        db: Database,
        rules: Rules,
        remotes: Remotes,
        local: Local,
        settings: ReplicationSettings,
        worker: str,
    ) -> None:
        self.db = db
        self.rules = rules
        self.remotes = remotes
        self.local = local
        self.settings = settings
        self.worker = worker
        self._remotes: dict[int, _Connected] = {}
        self._throttles: dict[int, Throttle] = {}
        self._copying: dict[int, asyncio.Task[None]] = {}

    # The loop

    async def run(self) -> None:
        """Until cancelled: a step, then a pause of `replication.poll_seconds` unless
        this process queued work meanwhile (Rules.wake)."""
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            while True:
                try:
                    await self.step()
                except Exception as exc:  # the next step tries again
                    log.error(
                        "replication: a step failed (%s: %s); trying again in %g s",
                        type(exc).__name__,
                        exc,
                        self.settings.poll_seconds,
                    )
                self.rules.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.rules.wake.wait(), self.settings.poll_seconds)
        finally:
            heartbeat.cancel()
            for task in list(self._copying.values()):
                task.cancel()
            await asyncio.gather(heartbeat, *self._copying.values(), return_exceptions=True)

    async def step(self) -> int:
        """Start due schedules, plan a run, claim items for the free slots. Reads first,
        so that an idle process takes no write turn."""
        moment = now()
        async with self.db.read() as conn:
            planning, due, scheduled = await q.work(conn, moment)
        done = 0
        if scheduled is not None and scheduled <= moment:
            done += await self.rules.start_due()
            planning = True
        if planning:
            done += await self.plan_one()
            due = True
        free = self.settings.concurrency - len(self._copying)
        if due and free > 0:
            done += await self._claim(free)
        return done

    async def drain(self, seconds: float = 60) -> None:
        """Step until every run has ended (tests, the CLI), retries included."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            busy = await self.step()
            if self._copying:
                await asyncio.wait(list(self._copying.values()), timeout=0.5)
                continue
            if not busy:
                async with self.db.read() as conn:
                    if not await q.unfinished(conn):
                        return
                await asyncio.sleep(0.02)
        raise TimeoutError("replication runs unfinished after the timeout")

    # Planning

    async def plan_one(self) -> int:
        lease = now() + timedelta(seconds=self.settings.lease_seconds * 10)

        async def claim(conn: AsyncConnection) -> tuple[int, int] | None:
            return await q.claim_planning(conn, now(), lease, self.worker)

        claimed = await self.db.transact(claim)
        if claimed is None:
            return 0
        run_id, rule_id = claimed
        async with self.db.read() as conn:
            rule = await q.rule_by_id(conn, rule_id)
        items: list[q.NewItem] = []
        error = None
        try:
            assert rule is not None  # its runs go with it
            items = await self._plan(rule)
        except FAILURES as exc:
            error = f"listing what the rule selects failed: {_words(exc)}"
            log.warning("replication rule %r, run %d: %s", rule and rule.name, run_id, error)

        async def queue(conn: AsyncConnection) -> None:
            if await q.planned(conn, run_id, self.worker, error) and error is None:
                await q.enqueue(conn, run_id, rule_id, items)
                await finish(conn, [run_id])  # nothing selected: it is done

        await self.db.transact(queue)
        return 1

    async def _plan(self, rule: q.RuleRow) -> list[q.NewItem]:
        source, sink = await self._sides(rule)
        repositories = Filter.of(rule.repositories)
        listed = await source.repositories(
            rule.namespace if rule.direction == "push" else None, repositories.literal
        )
        tags = {}
        for repository in listed:
            if repositories.selects(repository):
                tags[repository] = await source.tags(repository)
        there: dict[str, list[str]] = {}
        if rule.deletions:
            for repository in tags:
                name = destination_name(repository, rule.destination, rule.strip)
                there[name] = await sink.tags(name)
        return plan(rule, tags, there)

    # Copying

    async def _claim(self, free: int) -> int:
        until = now() + timedelta(seconds=self.settings.lease_seconds)

        async def claim(conn: AsyncConnection) -> list[q.ItemRow]:
            return await q.claim_items(conn, now(), until, self.worker, free)

        claimed = await self.db.transact(claim)
        for item in claimed:
            task = asyncio.create_task(self._copy(item))
            self._copying[item.id] = task
            task.add_done_callback(partial(self._done, item.id))
        return len(claimed)

    def _done(self, ident: int, _: asyncio.Task[None]) -> None:
        self._copying.pop(ident, None)

    async def _copy(self, item: q.ItemRow) -> None:
        async with self.db.read() as conn:
            rule = await q.rule_by_id(conn, item.rule_id)
        copy = None
        direction = rule.direction if rule else "push"
        try:
            if rule is None:
                raise CopyFailed("its rule was removed")
            source, sink = await self._sides(rule)
            copy = Copy(
                source,
                sink,
                kinds=rule.kinds,
                overwrite=rule.overwrite,
                blobs_at_once=rule.blobs_at_once,
                progress=lambda digest: _Progress(self.db, item.id, digest),
                throttle=self._throttle(rule),
                mounts=self._mounts(rule),
                signed_by=await self._trusted(rule, item) if rule.signed_only else None,
            )
            with context.using(context.system(f"replication/{rule.name}")):
                if item.action == "delete":
                    outcome = await copy.deletion(item.repository, item.reference, item.destination)
                else:
                    outcome = await copy.item(item.repository, item.reference, item.destination)
        except FAILURES as exc:
            await self._failed(item, _words(exc), copy.bytes if copy else 0, direction)
            return
        except Exception as exc:
            log.exception("replication item %d: unexpected failure", item.id)
            error = f"an error in the registry: {type(exc).__name__}"
            await self._failed(item, error, 0, direction)
            return
        await self._settle(item, outcome, copy.bytes, direction)

    async def _trusted(self, rule: q.RuleRow, item: q.ItemRow) -> Trusted:
        """The keys a signed-only rule's item is checked with: those the namespace on
        this registry's side trusts (the source's of a push, the destination's of a pull),
        read as each item starts, so that a key added or removed counts at once."""
        local = item.repository if rule.direction == "push" else item.destination
        namespace = namespace_of(local)
        async with self.db.read() as conn:
            rows = await trust_queries.keys_for(conn, namespace)
        loaded = []
        for row in rows:
            with contextlib.suppress(KeyInvalid):  # stored keys were checked when added
                loaded.append(load_key(row.pem))
        return Trusted(loaded, keeper(namespace))

    async def _settle(self, item: q.ItemRow, outcome: Outcome, size: int, rule: str) -> None:
        REPLICATION_ITEMS.labels(rule, outcome.state).inc()
        REPLICATION_BYTES.labels(rule).inc(size)
        if item.event_at is not None and outcome.state == "copied":
            REPLICATION_LAG.observe((now() - item.event_at).total_seconds())

        async def settle(conn: AsyncConnection) -> None:
            if await q.settle_item(
                conn,
                item.id,
                self.worker,
                outcome.state,
                digest=outcome.digest,
                size=size,
                error=outcome.reason,
            ):
                await finish(conn, [item.run_id])

        await self.db.transact(settle)

    async def _failed(self, item: q.ItemRow, error: str, size: int, rule: str) -> None:
        attempts = item.attempts + 1
        final = attempts >= self.settings.attempts
        REPLICATION_ITEMS.labels(rule, "failed" if final else "retried").inc()
        REPLICATION_BYTES.labels(rule).inc(size)
        delay = min(
            self.settings.max_backoff_seconds,
            self.settings.backoff_seconds * 2 ** min(item.attempts, 30),
        ) * random.uniform(0.75, 1.0)
        if final:
            log.warning(
                "replication item %d (%s %s:%s to %s) failed after %d attempts: %s",
                item.id,
                item.action,
                item.repository,
                item.reference,
                item.destination,
                attempts,
                error,
            )

        async def settle(conn: AsyncConnection) -> None:
            if await q.settle_item(
                conn,
                item.id,
                self.worker,
                "failed" if final else "pending",
                digest=item.digest,
                size=size,
                error=error,
                retry_at=None if final else now() + timedelta(seconds=delay),
            ):
                await finish(conn, [item.run_id])

        await self.db.transact(settle)

    async def _heartbeat(self) -> None:
        """Renew the leases of the items this process copies; stop a copy whose lease
        another process has taken."""
        while True:
            await asyncio.sleep(self.settings.lease_seconds / 3)
            held = list(self._copying)
            if not held:
                continue
            until = now() + timedelta(seconds=self.settings.lease_seconds)

            async def renew(
                conn: AsyncConnection, held: list[int] = held, until: datetime = until
            ) -> set[int]:
                return await q.renew_items(conn, held, self.worker, until)

            try:
                kept = await self.db.transact(renew)
            except Exception as exc:
                log.warning("replication: renewing leases failed (%s); trying again", exc)
                continue
            for ident in set(held) - kept:
                task = self._copying.get(ident)
                if task is not None:
                    log.warning("replication item %d: its lease was taken; this copy stops", ident)
                    task.cancel()

    # Ends

    async def _sides(self, rule: q.RuleRow) -> tuple[Source, Sink]:
        remote = (await self._connected(rule)).remote
        return (self.local, remote) if rule.direction == "push" else (remote, self.local)

    async def _connected(self, rule: q.RuleRow) -> _Connected:
        # By id: a remote removed and made again under its name is another client.
        found = self._remotes.get(rule.remote_id)
        if found is None:
            endpoint = await self.remotes.endpoint(rule.namespace, rule.remote)
            http = self.remotes.client(endpoint)
            client = RemoteRegistry(endpoint.url, http, endpoint.username, endpoint.password)
            found = _Connected(Remote(client, self.settings.chunk_bytes), http, Mounts())
            self._remotes[rule.remote_id] = found
        return found

    def _mounts(self, rule: q.RuleRow) -> Mounts:
        return self._remotes[rule.remote_id].mounts

    def _throttle(self, rule: q.RuleRow) -> Throttle:
        found = self._throttles.get(rule.id)
        if found is None or found.rate != rule.bandwidth:
            found = self._throttles[rule.id] = Throttle(rule.bandwidth)
        return found

    async def close(self) -> None:
        for connected in self._remotes.values():
            await connected.http.aclose()
        self._remotes.clear()


class _Progress:
    """Where the upload of one blob of one item stands at the remote (the database)."""

    def __init__(self, db: Database, item_id: int, digest: str) -> None:
        self.db = db
        self.item_id = item_id
        self.digest = digest

    async def saved(self) -> str | None:
        async with self.db.read() as conn:
            return await q.upload_at(conn, self.item_id, self.digest)

    async def save(self, location: str) -> None:
        async def keep(conn: AsyncConnection) -> None:
            await q.keep_upload(conn, self.item_id, self.digest, location)

        await self.db.transact(keep)


def _words(exc: BaseException) -> str:
    if isinstance(exc, RegistryError):
        return f"{exc.code}: {exc.message}"
    if isinstance(exc, UpstreamError) and exc.status == 0:
        cause = str(exc).partition(" unreachable: ")[2] or str(exc)
        return f"the remote could not be reached: {cause}"
    if isinstance(exc, httpx.HTTPError):
        return f"the remote could not be reached: {type(exc).__name__}: {exc}"
    return str(exc) or type(exc).__name__
