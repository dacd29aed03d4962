"""Upstream lookups in flight, and the upstream's recent 404s, in this process.

However many clients ask at once for the same tag, manifest or blob the cache lacks,
one lookup goes to the upstream and all of them get its answer; and an answer of "not
there" is remembered for `mirror.negative_ttl_seconds`, so a storm of pulls for a tag
that does not exist asks the upstream once per process, not once per pull. The lookup
runs as its own task: a client that goes away does not fail the others.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

# Misses remembered at most; past it, the expired ones are forgotten, then the oldest.
MAX_MISSES = 10_000


class Flights:
    def __init__(self, miss_seconds: float) -> None:
        self.miss_seconds = miss_seconds
        self._running: dict[Hashable, asyncio.Task[Any]] = {}
        # key -> until when (monotonic) the upstream is taken not to have it
        self._misses: dict[Hashable, float] = {}

    def missing(self, key: Hashable) -> bool:
        """Whether the upstream said lately that it does not have `key`."""
        until = self._misses.get(key)
        if until is None:
            return False
        if until > time.monotonic():
            return True
        del self._misses[key]
        return False

    def miss(self, key: Hashable) -> None:
        """Remember that the upstream does not have `key`."""
        if not self.miss_seconds:
            return
        if len(self._misses) >= MAX_MISSES:
            moment = time.monotonic()
            self._misses = {k: u for k, u in self._misses.items() if u > moment}
            while len(self._misses) >= MAX_MISSES:
                del self._misses[next(iter(self._misses))]
        self._misses[key] = time.monotonic() + self.miss_seconds

    async def run(self, key: Hashable, lookup: Callable[[], Awaitable[T | None]]) -> T | None:
        """`lookup`'s answer, shared with every caller asking for `key` meanwhile; None
        (the upstream does not have it) is remembered. Callers check `missing` first."""
        task = self._running.get(key)
        if task is None:

            async def once() -> T | None:
                found = await lookup()
                if found is None:
                    self.miss(key)
                return found

            task = asyncio.ensure_future(once())
            self._running[key] = task
            task.add_done_callback(lambda done: self._ended(key, done))
        found: T | None = await asyncio.shield(task)
        return found

    def _ended(self, key: Hashable, task: asyncio.Task[Any]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
        if not task.cancelled():
            task.exception()  # retrieved here, even if every caller went away

    async def close(self) -> None:
        for task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)
