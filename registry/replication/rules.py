"""Replication rules, and what starts their runs: a person ("run now", "retry failed"),
a cron schedule, or events.

Every trigger ends in the same queue (metadata/replication.py): a manual or scheduled
run is `planning` until a worker lists what its filters select and queues an item per
tag; an event adds its item to the rule's active run (or starts one) directly, in the
transaction that fans the outbox out (services/webhooks.py calls `consume`), so a push
that committed is copied even if every process dies before the copy.

One run at a time per rule: a manual trigger while a run is active is refused (409),
a schedule that comes due meanwhile is skipped, and events join the active run. A run
ends when its last item does; its row is locked (PostgreSQL) by whoever adds an item
or ends it, so an item is never added to a run that has just ended.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime
from typing import Any

from croniter import croniter
from sqlalchemy.ext.asyncio import AsyncConnection

from registry import context
from registry.errors import Conflict, Invalid, NotFound, RegistryError
from registry.kept import check_kept_name, keeper
from registry.metadata import events
from registry.metadata import remotes as remote_queries
from registry.metadata import replication as q
from registry.metadata.database import Database
from registry.metadata.models import now, utc
from registry.metadata.replication import ItemRow as ItemRow
from registry.metadata.replication import RuleRow as RuleRow
from registry.metadata.replication import RunRow as RunRow
from registry.replication.copy import ATTACHED_TAG
from registry.replication.filters import (
    Filter,
    check_destination,
    check_globs,
    check_kinds,
    destination_name,
)

log = logging.getLogger("registry.replication")

DIRECTIONS = ("push", "pull")
TRIGGERS = ("manual", "schedule", "event")
_MAX_BANDWIDTH = 10**12


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """A rule as made or changed through the API."""

    name: str
    direction: str
    remote: str
    repositories: list[str]
    tags: list[str]
    kinds: list[str]
    destination: str
    strip: int
    overwrite: bool
    deletions: bool
    trigger: str
    schedule: str | None
    bandwidth: int
    blobs_at_once: int
    enabled: bool
    signed_only: bool = False


def next_time(schedule: str, after: datetime) -> datetime:
    """When a cron schedule (5 fields, UTC) next comes after `after`."""
    found: datetime = croniter(schedule, after).get_next(datetime)
    return utc(found)


class Rules:
    def __init__(self, db: Database, hosting: bool = True) -> None:
        self.db = db
        # False on a mirror only (mirror.mirror_only): nothing is hosted there, so
        # nothing may be pulled in to stay.
        self.hosting = hosting
        # Set when items were queued by this process: its worker looks at once.
        self.wake = asyncio.Event()

    # Rules

    async def add(self, namespace: str, spec: RuleSpec) -> q.RuleRow:
        spec = self._checked(namespace, spec)

        async def insert(conn: AsyncConnection) -> q.RuleRow:
            remote = await remote_queries.find(conn, namespace, spec.remote)
            if remote is None:
                raise _no_remote(namespace, spec.remote)
            values = _values(spec)
            del values["remote"]
            made = await q.insert_rule(
                conn,
                namespace=namespace,
                remote_id=remote.id,
                next_run_at=next_time(spec.schedule, now()) if spec.schedule else None,
                created_by=context.current().actor[:255],
                **values,
            )
            if made is None:
                raise Conflict(message=f"{keeper(namespace)} has a rule named {spec.name!r}")
            await events.record(
                conn, "replication.rule.create", namespace=namespace or None, detail=_detail(spec)
            )
            found = await q.rule_by_id(conn, made)
            assert found is not None
            return found

        return await self.db.transact(insert)

    async def listed(self, namespace: str | None) -> list[q.RuleRow]:
        async with self.db.read() as conn:
            return await q.rules(conn, namespace)

    async def get(self, namespace: str, name: str) -> q.RuleRow:
        async with self.db.read() as conn:
            found = await q.rule(conn, namespace, name)
        if found is None:
            raise _no_rule(namespace, name)
        return found

    async def change(self, namespace: str, name: str, changes: dict[str, Any]) -> q.RuleRow:
        current = await self.get(namespace, name)
        spec = replace(_spec(current), **changes)
        spec = self._checked(namespace, spec)

        async def update(conn: AsyncConnection) -> q.RuleRow:
            remote = await remote_queries.find(conn, namespace, spec.remote)
            if remote is None:
                raise _no_remote(namespace, spec.remote)
            values = _values(spec)
            del values["remote"]
            if spec.schedule != current.schedule or spec.trigger != current.trigger:
                values["next_run_at"] = next_time(spec.schedule, now()) if spec.schedule else None
            await q.change_rule(conn, current.id, remote_id=remote.id, **values)
            await events.record(
                conn,
                "replication.rule.update",
                namespace=namespace or None,
                detail={"rule": name, **{k: v for k, v in changes.items()}},
            )
            found = await q.rule_by_id(conn, current.id)
            assert found is not None
            return found

        return await self.db.transact(update)

    async def remove(self, namespace: str, name: str) -> None:
        async def delete(conn: AsyncConnection) -> None:
            found = await q.rule(conn, namespace, name)
            if found is None:
                raise _no_rule(namespace, name)
            await q.remove_rule(conn, found.id)  # its runs and items go with it
            await events.record(
                conn, "replication.rule.delete", namespace=namespace or None, detail={"rule": name}
            )

        await self.db.transact(delete)

    def _checked(self, namespace: str, spec: RuleSpec) -> RuleSpec:
        check_kept_name(spec.name)
        if spec.direction not in DIRECTIONS:
            raise Invalid(message="direction: push (here to the remote) or pull (to here)")
        if spec.trigger not in TRIGGERS:
            raise Invalid(message=f"trigger: one of {', '.join(TRIGGERS)}")
        if spec.direction == "pull" and not self.hosting:
            raise Invalid(
                message="direction: this registry is a mirror only (mirror.mirror_only), "
                "which hosts nothing; a pull rule's copies are hosted content"
            )
        if spec.trigger == "event" and spec.direction == "pull":
            raise Invalid(
                message="trigger: a pull rule hears no events from its remote; use "
                "schedule or manual"
            )
        schedule = (spec.schedule or "").strip() or None
        if spec.trigger == "schedule":
            if schedule is None or not croniter.is_valid(schedule) or len(schedule) > 120:
                raise Invalid(
                    {"schedule": (spec.schedule or "")[:120]},
                    message="schedule: a cron expression of 5 fields, in UTC "
                    "(minute hour day-of-month month day-of-week: `0 3 * * *`)",
                )
        else:
            schedule = None
        try:
            destination = check_destination(spec.destination)
        except RegistryError:
            raise Invalid(
                {"destination": spec.destination[:255]},
                message="destination: a repository path (`prod`, `mirror/team`) or empty",
            ) from None
        if namespace and spec.direction == "pull" and destination.split("/")[0] != namespace:
            raise Invalid(
                message=f"destination: a pull rule of namespace {namespace!r} copies into it: "
                f"{namespace!r} or a path under it"
            )
        if not 0 <= spec.strip <= 16:
            raise Invalid(message="strip: from 0 to 16 leading path components")
        if not 0 <= spec.bandwidth <= _MAX_BANDWIDTH:
            raise Invalid(message="bandwidth: bytes per second, 0 for no limit")
        if not 1 <= spec.blobs_at_once <= 32:
            raise Invalid(message="blobs_at_once: from 1 to 32")
        return replace(
            spec,
            repositories=check_globs("repositories", spec.repositories),
            tags=check_globs("tags", spec.tags),
            kinds=check_kinds(spec.kinds),
            destination=destination,
            schedule=schedule,
        )

    # Runs

    async def run_now(self, namespace: str, name: str, trigger: str = "manual") -> int:
        """Start a run that lists what the rule selects (planned by a worker); 409
        while one is going on."""

        async def start(conn: AsyncConnection) -> int:
            rule = await q.rule(conn, namespace, name)
            if rule is None:
                raise _no_rule(namespace, name)
            active = await q.active_run(conn, rule.id)
            if active is not None:
                raise Conflict(
                    {"run": active},
                    message=f"rule {name!r} has run {active} going on; one run at a time",
                )
            run = await q.insert_run(conn, rule.id, trigger, "planning", _actor())
            await events.record(
                conn,
                "replication.run",
                namespace=namespace or None,
                detail={"rule": name, "run": run, "trigger": trigger},
            )
            return run

        run = await self.db.transact(start)
        self.wake.set()
        return run

    async def retry(self, namespace: str, run_id: int) -> int:
        """Queue a run's failed items again: in the rule's active run, or a new one."""

        async def again(conn: AsyncConnection) -> int:
            found = await self._run_of(conn, namespace, run_id)
            failed = await q.failed_items(conn, run_id)
            if not failed:
                raise Conflict(message=f"run {run_id} has no failed items")
            target = await q.active_run(conn, found.rule_id, lock=True)
            if target is None:
                target = await q.insert_run(conn, found.rule_id, "retry", "running", _actor())
            await q.enqueue(conn, target, found.rule_id, failed)
            return target

        run = await self.db.transact(again)
        self.wake.set()
        return run

    async def runs(
        self, namespace: str, rule: str | None, before: int | None, limit: int
    ) -> list[q.RunRow]:
        async with self.db.read() as conn:
            rules = await q.rules(conn, namespace)
            ids = [r.id for r in rules if rule is None or r.name == rule]
            if rule is not None and not ids:
                raise _no_rule(namespace, rule)
            return await q.runs(conn, ids, before, limit)

    async def run(self, namespace: str, run_id: int) -> q.RunRow:
        async with self.db.read() as conn:
            return await self._run_of(conn, namespace, run_id)

    async def items(
        self, namespace: str, run_id: int, state: str | None, before: int | None, limit: int
    ) -> list[q.ItemRow]:
        async with self.db.read() as conn:
            await self._run_of(conn, namespace, run_id)
            return await q.items(conn, run_id, state, before, limit)

    async def recent(self, rule_ids: Sequence[int], limit: int) -> list[q.RunRow]:
        """The newest runs of these rules (the console's, across namespaces)."""
        async with self.db.read() as conn:
            return await q.runs(conn, rule_ids, None, limit)

    async def run_anywhere(self, run_id: int) -> tuple[q.RunRow, q.RuleRow]:
        """A run and its rule, whatever the namespace (the caller checks who may)."""
        async with self.db.read() as conn:
            found = await _run_and_rule(conn, run_id)
        if found is None:
            raise NotFound({"run": run_id}, message=f"no replication run {run_id}")
        return found

    async def rule_names(self, namespace: str) -> dict[int, str]:
        async with self.db.read() as conn:
            return {r.id: r.name for r in await q.rules(conn, namespace)}

    async def _run_of(self, conn: AsyncConnection, namespace: str, run_id: int) -> q.RunRow:
        found = await _run_and_rule(conn, run_id)
        if found is None or found[1].namespace != namespace:
            raise NotFound({"run": run_id}, message=f"{keeper(namespace)} has no run {run_id}")
        return found[0]

    # Schedules

    async def start_due(self) -> int:
        """Start the runs of schedules that came due; each by one process only (the
        first to move its next time on)."""
        moment = now()
        async with self.db.read() as conn:
            due = [
                r
                for r in await q.rules(conn, trigger="schedule")
                if r.next_run_at is not None and r.next_run_at <= moment and r.schedule
            ]
        started = 0
        for rule in due:
            started += await self._start_scheduled(rule, moment)
        if started:
            self.wake.set()
        return started

    async def _start_scheduled(self, rule: q.RuleRow, moment: datetime) -> int:
        assert rule.next_run_at is not None and rule.schedule is not None
        seen, following = rule.next_run_at, next_time(rule.schedule, moment)

        async def take(conn: AsyncConnection) -> int:
            if not await q.take_schedule(conn, rule.id, seen, following):
                return 0  # another process took it
            active = await q.active_run(conn, rule.id)
            if active is not None:
                log.warning(
                    "replication rule %r: its schedule came due while run %d is going on; "
                    "skipped (one run at a time)",
                    rule.name,
                    active,
                )
                return 0
            await q.insert_run(conn, rule.id, "schedule", "planning", "schedule")
            return 1

        return await self.db.transact(take)

    # Events (called by the outbox's fan-out, in its transaction)

    def committed(self) -> None:
        self.wake.set()

    async def wants_events(self, conn: AsyncConnection) -> bool:
        return bool(await q.rules(conn, trigger="event"))

    async def consume(
        self, conn: AsyncConnection, found: Sequence[tuple[int, dict[str, Any]]]
    ) -> int:
        """Queue what these events ask of the event-triggered rules; how many items."""
        rules = [r for r in await q.rules(conn, trigger="event") if r.direction == "push"]
        queued = 0
        for rule in rules:
            items = [item for _, event in found for item in _items_for(rule, event)]
            if not items:
                continue
            run = await q.active_run(conn, rule.id, lock=True)
            if run is None:
                run = await q.insert_run(conn, rule.id, "event", "running", "events")
            queued += await q.enqueue(conn, run, rule.id, items)
        return queued


async def _run_and_rule(conn: AsyncConnection, run_id: int) -> tuple[q.RunRow, q.RuleRow] | None:
    found = await q.run(conn, run_id) if 0 < run_id < 2**63 else None
    rule = await q.rule_by_id(conn, found.rule_id) if found else None
    return (found, rule) if found is not None and rule is not None else None


async def finish(conn: AsyncConnection, run_ids: Sequence[int]) -> None:
    """End the runs whose items are all done, each with a `replication` event (audit,
    and webhooks that want it) saying how it went."""
    for run_id in await q.finish_runs(conn, run_ids):
        run = await q.run(conn, run_id)
        rule = await q.rule_by_id(conn, run.rule_id) if run else None
        if run is None or rule is None:
            continue
        await events.record(
            conn,
            "replication",
            namespace=rule.namespace or None,
            outcome="success" if run.state == "succeeded" else "failure",
            detail={
                "rule": rule.name,
                "direction": rule.direction,
                "remote": rule.remote,
                "run": run.id,
                "trigger": run.trigger,
                "state": run.state,
                "items": run.counts,
                "bytes": run.bytes,
            },
        )


def _items_for(rule: q.RuleRow, event: dict[str, Any]) -> list[q.NewItem]:
    """What one event asks of a push rule: a copy of the tag (or referrer) pushed, or
    the deletion of what was deleted."""
    action = event.get("action")
    target = event.get("target") or {}
    repository = target.get("repository")
    if not isinstance(repository, str) or event.get("outcome", "success") != "success":
        return []
    if rule.namespace and event.get("namespace") != rule.namespace:
        return []
    if not Filter.of(rule.repositories).selects(repository):
        return []
    tag = target.get("tag")
    digest = target.get("digest")
    at = datetime.fromisoformat(event["timestamp"]) if "timestamp" in event else None
    destination = destination_name(repository, rule.destination, rule.strip)
    if action == "push" and target.get("mediaType") != events.BLOB_TYPE:
        if isinstance(tag, str):
            if ATTACHED_TAG.fullmatch(tag) or Filter.of(rule.tags).selects(tag):
                return [q.NewItem("copy", repository, tag, destination, at)]
        elif isinstance(digest, str) and target.get("subject"):
            # A referrer pushed by digest (a signature, an SBOM) follows its subject.
            return [q.NewItem("copy", repository, digest, destination, at)]
    elif action == "delete" and rule.deletions:
        reference = tag if isinstance(tag, str) else digest
        if isinstance(reference, str) and (
            not isinstance(tag, str) or Filter.of(rule.tags).selects(tag)
        ):
            return [q.NewItem("delete", repository, reference, destination, at)]
    return []


def plan(
    rule: q.RuleRow,
    tags_by_repository: dict[str, list[str]],
    destination_tags: dict[str, list[str]],
) -> list[q.NewItem]:
    """The items of a manual or scheduled run: each selected tag, and, with deletions,
    each tag of a copied repository's destination that its source no longer has."""
    tag_filter = Filter.of(rule.tags)
    items = []
    for repository, tags in sorted(tags_by_repository.items()):
        destination = destination_name(repository, rule.destination, rule.strip)
        selected = [t for t in tags if tag_filter.selects(t) and not ATTACHED_TAG.fullmatch(t)]
        items += [q.NewItem("copy", repository, t, destination) for t in sorted(selected)]
        if rule.deletions:
            gone = set(destination_tags.get(destination, [])) - set(tags)
            items += [
                q.NewItem("delete", repository, t, destination)
                for t in sorted(gone)
                if tag_filter.selects(t) and not ATTACHED_TAG.fullmatch(t)
            ]
    return items


def _values(spec: RuleSpec) -> dict[str, Any]:
    return asdict(spec)


def _spec(row: q.RuleRow) -> RuleSpec:
    return RuleSpec(**{f.name: getattr(row, f.name) for f in fields(RuleSpec)})


def _detail(spec: RuleSpec) -> dict[str, Any]:
    return {"rule": spec.name, **{k: v for k, v in _values(spec).items() if k != "name"}}


def _actor() -> str:
    return context.current().actor[:255]


def _no_rule(namespace: str, name: str) -> NotFound:
    return NotFound(message=f"{keeper(namespace)} has no replication rule named {name!r}")


def _no_remote(namespace: str, name: str) -> Invalid:
    return Invalid(
        {"remote": name[:80]},
        message=f"remote: {keeper(namespace)} has no remote named {name!r} (add it first)",
    )
