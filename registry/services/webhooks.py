"""Webhooks: endpoints that receive events, and the worker that delivers them.

Durable: an event is a row written in the transaction of the change that caused it
(metadata/events.py), so a change that committed has its event, whatever happens to
the process next. A worker in every `registry serve` process then:

1. dispatches: takes undispatched events in id order, adds a delivery for every enabled
   endpoint that wants each one, and marks them dispatched, all in one transaction (on
   PostgreSQL under a transaction-scoped advisory lock, so one process at a time fans
   out and deliveries are queued in event order);
2. claims: leases due deliveries that are the oldest pending one of their endpoint
   (metadata/webhooks.py), so no two processes send the same delivery and an endpoint
   gets its events in order, one at a time;
3. sends, concurrently across endpoints, and logs the attempt: delivered on a 2xx,
   else retried with exponential backoff and jitter until `webhooks.retry_hours` after
   the event, then failed (the endpoint's next delivery goes on).

A process killed while sending leaves its lease to expire; another process sends the
delivery again. So delivery is at least once: receivers deduplicate by the event id,
which the signed body carries (as do X-Registry-Event-Id and X-Registry-Delivery).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.addresses import resolves_private
from registry.config import AuditSettings, WebhookSettings
from registry.errors import Invalid, NotFound
from registry.metadata import events as event_queries
from registry.metadata import webhooks as q
from registry.metadata.database import Database
from registry.metadata.events import WEBHOOK_KINDS as WEBHOOK_KINDS
from registry.metadata.models import now
from registry.metadata.webhooks import Endpoint as Endpoint
from registry.metrics import WEBHOOK_ATTEMPTS, WEBHOOK_DURATION

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger("registry.webhooks")

FORMATS = ("distribution", "cloudevents")
DISTRIBUTION_TYPE = "application/vnd.docker.distribution.events.v2+json"
CLOUDEVENTS_TYPE = "application/cloudevents+json"
# Events fanned out, and endpoints whose deliveries are claimed, in one transaction.
BATCH = 200
# Deliveries of one endpoint claimed at once, and sent one after the other.
EACH = 50
# Deliveries in flight from one process at once.
CONCURRENCY = 16
# Bytes of an answer kept in the delivery log.
EXCERPT = 1024
# The advisory lock key of dispatching on PostgreSQL (any constant of ours).
DISPATCH_LOCK = 0x7265_6777_6862  # "regwhb"
PRUNE_SECONDS = 3600.0
# The worker's pause between steps while there is work: a delivery waits up to this long
# more, and a steady stream of events goes out in fewer, larger batches (each step is a
# read and a write turn, which on SQLite every push waits for).
BUSY_PAUSE = 0.5


def signature(secret: str, body: bytes) -> str:
    """X-Registry-Signature: the HMAC-SHA256 of the body, keyed by the endpoint's secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def render(event: dict[str, Any], form: str) -> tuple[bytes, str]:
    """The body of a delivery and its content type: Distribution's envelope of one
    event, or a CloudEvents 1.0 structured event carrying it as data."""
    if form == "cloudevents":
        cloud: dict[str, Any] = {
            "specversion": "1.0",
            "id": event["id"],
            "source": f"/registry/{event['source']['addr']}",
            "type": f"io.registry.{event['action']}",
            "time": event["timestamp"],
            "datacontenttype": "application/json",
            "data": event,
        }
        repository = event.get("target", {}).get("repository")
        if repository:
            cloud["subject"] = repository
        return json.dumps(cloud, separators=(",", ":")).encode(), CLOUDEVENTS_TYPE
    return json.dumps({"events": [event]}, separators=(",", ":")).encode(), DISTRIBUTION_TYPE


def wants(endpoint: Endpoint, event: dict[str, Any]) -> bool:
    if event_queries.kind(event) not in endpoint.events:
        return False
    if datetime.fromisoformat(event["timestamp"]) < endpoint.created_at:
        return False  # it happened before the endpoint was added
    if endpoint.namespace is not None and event.get("namespace") != endpoint.namespace:
        return False
    target = event.get("target", {})
    if endpoint.repositories is not None and not fnmatchcase(
        target.get("repository", ""), endpoint.repositories
    ):
        return False
    tag = target.get("tag")
    return endpoint.tags is None or (tag is not None and fnmatchcase(tag, endpoint.tags))


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid({"url": url}, message="url: expected an http:// or https:// URL")
    if parts.username or parts.password:
        raise Invalid({"url": url}, message="url: no credentials in the URL; use the secret")
    return url


def check_events(actions: Sequence[str]) -> list[str]:
    unknown = sorted(set(actions) - set(WEBHOOK_KINDS))
    if unknown or not actions:
        raise Invalid(
            {"events": list(actions)},
            message=f"events: expected some of {', '.join(WEBHOOK_KINDS)}"
            + (f"; unknown: {', '.join(unknown)}" if unknown else ""),
        )
    return sorted(set(actions))


def check_format(form: str) -> str:
    if form not in FORMATS:
        raise Invalid({"format": form}, message=f"format: expected one of {', '.join(FORMATS)}")
    return form


class Subscriber(Protocol):
    """Another consumer of the outbox (replication's event-triggered rules): fed each
    batch of events in the fan-out's transaction, so what it queues commits with the
    events marked dispatched, and told once that transaction has committed."""

    async def wants_events(self, conn: AsyncConnection) -> bool: ...
    async def consume(
        self, conn: AsyncConnection, found: Sequence[tuple[int, dict[str, Any]]]
    ) -> int: ...
    def committed(self) -> None: ...


@dataclass(frozen=True)
class Sent:
    status: int | None
    seconds: float
    error: str | None
    response: str | None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Webhooks:
    def __init__(
        self, db: Database, settings: WebhookSettings, audit: AuditSettings, worker: str
    ) -> None:
        self.db = db
        self.settings = settings
        self.audit = audit
        self.worker = worker
        self._client: aiohttp.ClientSession | None = None
        self._last_prune = float("-inf")
        self.subscribers: list[Subscriber] = []

    # Endpoints

    async def add(
        self,
        *,
        namespace: str | None,
        url: str,
        events: Sequence[str],
        repositories: str | None,
        tags: str | None,
        secret: str | None,
        form: str,
        created_by: str,
    ) -> tuple[Endpoint, str]:
        """A new endpoint and its secret (generated unless given)."""
        secret = secret or secrets.token_urlsafe(32)
        values = {
            "namespace": namespace,
            "url": check_url(url),
            "events": check_events(events),
            "repositories": repositories,
            "tags": tags,
            "secret": secret,
            "format": check_format(form),
            "enabled": True,
            "created_by": created_by,
        }

        async def insert(conn: AsyncConnection) -> Endpoint:
            # The endpoint wants events from its creation on. Its time is taken with
            # fanning out held off (SQLite: this write turn; PostgreSQL: the dispatch
            # lock), so every event a fan-out saw without this endpoint is older.
            if conn.dialect.name == "postgresql":
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": DISPATCH_LOCK}
                )
            ident = await q.add(conn, **values, created_at=now())
            await event_queries.record(
                conn,
                "webhook.create",
                namespace=namespace,
                detail={"webhook": ident, "url": url, "events": values["events"]},
            )
            found = await q.endpoint(conn, ident)
            assert found is not None
            return found

        return await self.db.transact(insert), secret

    async def get(self, ident: int) -> Endpoint:
        found = None
        if 0 < ident < 2**31:  # an id past the column's range names nothing
            async with self.db.read() as conn:
                found = await q.endpoint(conn, ident)
        if found is None:
            raise NotFound({"webhook": ident}, message=f"no webhook {ident}")
        return found

    async def endpoints(self, namespaces: Sequence[str] | None = None) -> list[Endpoint]:
        async with self.db.read() as conn:
            return await q.endpoints(conn, namespaces=namespaces)

    async def change(self, ident: int, changes: dict[str, Any]) -> Endpoint:
        if "url" in changes:
            check_url(changes["url"])
        if "events" in changes:
            changes["events"] = check_events(changes["events"])
        if "format" in changes:
            check_format(changes["format"])

        async def update(conn: AsyncConnection) -> Endpoint | None:
            found = await q.endpoint(conn, ident)
            if found is None:
                return None
            await q.change(conn, ident, **changes)
            shown = {k: v for k, v in changes.items() if k != "secret"}
            if "secret" in changes:
                shown["secret"] = "changed"
            await event_queries.record(
                conn,
                "webhook.update",
                namespace=found.namespace,
                detail={"webhook": ident, **shown},
            )
            return await q.endpoint(conn, ident)

        changed = await self.db.transact(update)
        if changed is None:
            raise NotFound({"webhook": ident}, message=f"no webhook {ident}")
        return changed

    async def remove(self, ident: int) -> None:
        async def delete(conn: AsyncConnection) -> bool:
            found = await q.endpoint(conn, ident)
            if found is None:
                return False
            await q.remove(conn, ident)
            await event_queries.record(
                conn,
                "webhook.delete",
                namespace=found.namespace,
                detail={"webhook": ident, "url": found.url},
            )
            return True

        if not await self.db.transact(delete):
            raise NotFound({"webhook": ident}, message=f"no webhook {ident}")

    async def deliveries(
        self, ident: int, state: str | None, before: int | None, limit: int
    ) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            return await q.deliveries(conn, ident, state=state, before=before, limit=limit)

    async def attempts(self, ident: int, before: int | None, limit: int) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            return await q.attempts(conn, ident, before, limit)

    async def redeliver(self, ident: int, delivery: int | None) -> int:
        async def queue(conn: AsyncConnection) -> int:
            return await q.redeliver(conn, ident, now(), delivery)

        if delivery is not None and not 0 < delivery < 2**63:
            count = 0
        else:
            count = await self.db.transact(queue)
        if delivery is not None and not count:
            raise NotFound(
                {"delivery": delivery}, message=f"webhook {ident} has no delivery {delivery}"
            )
        return count

    async def test(self, ident: int) -> Sent:
        """A `ping` event sent to the endpoint now, outside its queue, signed and shaped as
        every delivery is: whether the URL, the receiver and its check of the signature
        work. Its answer, once: not retried, not in the delivery log."""
        endpoint = await self.get(ident)
        row = event_queries.event("ping", namespace=endpoint.namespace, detail={"webhook": ident})
        event = json.loads(row["body"])
        body, content_type = render(event, endpoint.format)
        return await self._send(endpoint, "test", event, body, content_type)

    async def backlog(self) -> dict[str, int]:
        async with self.db.read() as conn:
            return await q.backlog(conn)

    async def pull_wanted(self) -> bool:
        async with self.db.read() as conn:
            return await q.pull_wanted(conn)

    # Delivery

    async def dispatch(self) -> int:
        """Fan undispatched events out to the endpoints that want them; returns how many
        events were dispatched."""
        events, _ = await self.db.transact(self._fan_out)
        self._tell_subscribers(events)
        return events

    def _tell_subscribers(self, events: int) -> None:
        if events:
            for subscriber in self.subscribers:
                subscriber.committed()

    async def _fan_out(self, conn: AsyncConnection) -> tuple[int, int]:
        """(events dispatched, deliveries queued)."""
        if conn.dialect.name == "postgresql":
            taken = await conn.scalar(
                text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": DISPATCH_LOCK}
            )
            if not taken:
                return 0, 0  # another process is at it
        endpoints = await q.endpoints(conn, enabled=True)
        subscribers = [s for s in self.subscribers if await s.wants_events(conn)]
        if not endpoints and not subscribers:
            # Nothing wants them, and an endpoint added after this read wants only
            # events newer than any seen here (see add): mark them dispatched without
            # reading their bodies.
            return await event_queries.mark_all_dispatched(conn), 0
        found = await event_queries.undispatched(conn, BATCH)
        if not found:
            return 0, 0
        moment = now()
        rows = [
            {
                "webhook_id": endpoint.id,
                "event_uid": event["id"],
                "action": event["action"],
                "body": json.dumps(event, separators=(",", ":")),
                "state": "pending",
                "attempts": 0,
                "created_at": moment,
                "next_attempt_at": moment,
            }
            for _, event in found
            for endpoint in endpoints
            if wants(endpoint, event)
        ]
        await q.enqueue(conn, rows)
        for subscriber in subscribers:
            await subscriber.consume(conn, found)
        await event_queries.mark_dispatched(conn, [ident for ident, _ in found])
        return len(found), len(rows)

    async def deliver(self, *, fan_out: bool = False, due: bool = True) -> int:
        """Claim due deliveries (after fanning out new events, with `fan_out`, in the
        same transaction) and send them, each endpoint's in order, concurrently across
        endpoints; settle them all in one transaction. Returns how many were sent.
        `due`: whether a delivery was due before the fan-out; if none was and the fan-out
        queued none, there is nothing to claim (the claim is the dearest statement)."""
        moment = now()
        # An endpoint's batch stops starting sends once one timeout has gone by, so the
        # last send of a batch ends within two; the lease covers that.
        lease = timedelta(seconds=2 * self.settings.timeout_seconds + 30)

        fanned = 0

        async def take(conn: AsyncConnection) -> list[q.Claimed]:
            nonlocal fanned
            if fan_out:
                fanned, queued = await self._fan_out(conn)
                if not queued and not due:
                    return []
            return await q.claim(conn, now(), moment + lease, self.worker, BATCH, EACH)

        claimed = await self.db.transact(take)
        self._tell_subscribers(fanned)
        if not claimed:
            return 0
        endpoints = {e.id: e for e in await self.endpoints()}
        queues: dict[int, list[q.Claimed]] = {}
        for delivery in claimed:
            queues.setdefault(delivery.webhook_id, []).append(delivery)
        limit = asyncio.Semaphore(CONCURRENCY)
        done: list[q.Settled] = []
        unsent: list[int] = []

        async def one(endpoint: Endpoint | None, queue: list[q.Claimed]) -> None:
            async with limit:
                started = time.monotonic()
                for n, delivery in enumerate(queue):
                    late = time.monotonic() - started > self.settings.timeout_seconds
                    if endpoint is None or late:
                        unsent.extend(d.id for d in queue[n:])
                        return
                    settled = await self._attempt(endpoint, delivery)
                    done.append(settled)
                    if settled.state != "delivered":
                        # Order: the next ones wait until this one is through.
                        unsent.extend(d.id for d in queue[n + 1 :])
                        return

        await asyncio.gather(*(one(endpoints.get(i), queue) for i, queue in queues.items()))

        async def settle(conn: AsyncConnection) -> None:
            await q.settle(conn, self.worker, done, unsent)

        await self.db.transact(settle)
        return len(done)

    async def _attempt(self, endpoint: Endpoint, delivery: q.Claimed) -> q.Settled:
        event = json.loads(delivery.body)
        body, content_type = render(event, endpoint.format)
        sent = await self._send(endpoint, str(delivery.id), event, body, content_type)
        moment = now()
        give_up = delivery.created_at + timedelta(hours=self.settings.retry_hours)
        delay = min(
            self.settings.max_backoff_seconds,
            self.settings.backoff_seconds * 2 ** min(delivery.attempts, 30),
        ) * random.uniform(0.5, 1.0)
        retry_at = moment + timedelta(seconds=delay)
        state = "delivered" if sent.ok else "failed" if retry_at > give_up else "pending"
        outcome = {"delivered": "delivered", "failed": "failed"}.get(state, "retried")
        WEBHOOK_ATTEMPTS.labels(outcome).inc()
        WEBHOOK_DURATION.observe(sent.seconds)
        if state == "failed":
            log.warning(
                "webhook %d (%s): gave up on event %s after %d attempts in %g hours "
                "(webhooks.retry_hours): %s; it can be sent again from its deliveries",
                endpoint.id,
                endpoint.url,
                event["id"],
                delivery.attempts + 1,
                self.settings.retry_hours,
                sent.error or f"HTTP {sent.status}",
            )
        attempt = {
            "at": moment,
            "status": sent.status,
            "seconds": sent.seconds,
            "error": sent.error,
            "response": sent.response,
        }
        return q.Settled(delivery, attempt, state, retry_at)

    async def _send(
        self,
        endpoint: Endpoint,
        delivery: str,
        event: dict[str, Any],
        body: bytes,
        content_type: str,
    ) -> Sent:
        import aiohttp  # on first delivery: a worker that sends none never loads it

        clock = time.monotonic()
        parts = urlsplit(endpoint.url)
        if endpoint.namespace is not None and not self.settings.allow_private_targets:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            private = await resolves_private(parts.hostname or "", port)
            if private is not None:
                return Sent(
                    None,
                    time.monotonic() - clock,
                    f"refused: {parts.hostname} is the non-public address {private}; only "
                    "an admin's global webhook may target one, or set "
                    "webhooks.allow_private_targets",
                    None,
                )
        headers = {
            "Content-Type": content_type,
            "User-Agent": "registry-webhooks/1",
            "X-Registry-Event": event["action"],
            "X-Registry-Event-Id": event["id"],
            "X-Registry-Delivery": delivery,
            "X-Registry-Timestamp": str(int(time.time())),
            "X-Registry-Signature": signature(endpoint.secret, body),
        }
        try:
            async with self.client.post(
                endpoint.url, data=body, headers=headers, allow_redirects=False
            ) as r:
                # Only what the log keeps: a receiver's long answer is not read whole.
                excerpt = (await r.content.read(EXCERPT)).decode("utf-8", "replace")
                status = r.status
        except TimeoutError:
            error = (
                f"no answer within {self.settings.timeout_seconds:g} s (webhooks.timeout_seconds)"
            )
            return Sent(None, time.monotonic() - clock, error, None)
        except aiohttp.ClientError as exc:
            return Sent(None, time.monotonic() - clock, f"{type(exc).__name__}: {exc}", None)
        return Sent(status, time.monotonic() - clock, None, excerpt)

    @property
    def client(self) -> aiohttp.ClientSession:
        # aiohttp, not httpx: a POST costs a fifth of the CPU (190 against 1,150 us on
        # this project's machines), and a busy registry sends one per event.
        import aiohttp

        if self._client is None:
            self._client = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_seconds),
                connector=aiohttp.TCPConnector(limit=CONCURRENCY),
                trust_env=True,  # HTTPS_PROXY and friends, as httpx did
                auto_decompress=False,
                skip_auto_headers=("Accept-Encoding",),
            )
        return self._client

    async def prune(self) -> tuple[int, int]:
        """Delete audit rows and finished deliveries past `audit.retention_days`."""
        if not self.audit.retention_days:
            return 0, 0
        cutoff = now() - timedelta(days=self.audit.retention_days)

        async def delete(conn: AsyncConnection) -> tuple[int, int]:
            return await event_queries.prune(conn, cutoff)

        return await self.db.transact(delete)

    async def step(self) -> int:
        """Once: dispatch, deliver, and prune when due; returns the work done. Whether
        there is anything to do is read first, so an idle worker takes no write turn
        (SQLite has one writer for everything)."""
        done = 0
        async with self.db.read() as conn:
            undispatched, due = await q.work(conn, now())
        if due or undispatched:
            done += await self.deliver(fan_out=undispatched, due=due) + undispatched
        clock = time.monotonic()
        if clock - self._last_prune >= PRUNE_SECONDS:
            self._last_prune = clock
            events, deliveries = await self.prune()
            if events or deliveries:
                log.info(
                    "audit retention: deleted %d events and %d finished deliveries older "
                    "than %g days",
                    events,
                    deliveries,
                    self.audit.retention_days,
                )
        return done

    async def run(self) -> None:
        """The delivery worker of `registry serve`: steps until cancelled, every
        BUSY_PAUSE while there is work, else every `webhooks.poll_seconds`."""
        while True:
            try:
                busy = await self.step()
            except Exception as exc:
                log.error(
                    "webhook delivery: a step failed (%s: %s); retrying in %g s",
                    type(exc).__name__,
                    exc,
                    self.settings.poll_seconds,
                )
                busy = 0
            # Busy: again soon, once more events have come, so that a steady stream of
            # them goes out in batches rather than a few write transactions each.
            await asyncio.sleep(
                min(BUSY_PAUSE, self.settings.poll_seconds) if busy else self.settings.poll_seconds
            )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
