"""Failed-login limits per (account, client address), kept in this process.

With several replicas each keeps its own count, so an attacker gets at most `attempts`
tries per window per replica: still a few guesses a minute against an argon2 hash.
"""

from __future__ import annotations

import math
import time
from collections import deque

# Past this many tracked keys, expired entries are swept on the next failure.
_SWEEP_AT = 10_000


class LoginLimiter:
    def __init__(self, attempts: int, window_seconds: float) -> None:
        self.attempts = attempts
        self.window = window_seconds
        self._failures: dict[tuple[str, str], deque[float]] = {}

    def retry_after(self, account: str, client: str) -> int | None:
        """Seconds until the next attempt may be made, or None if it may be made now."""
        failures = self._failures.get((account, client))
        if not failures:
            return None
        self._expire(failures, time.monotonic())
        if len(failures) < self.attempts:
            return None
        return max(1, math.ceil(failures[0] + self.window - time.monotonic()))

    def failed(self, account: str, client: str) -> None:
        now = time.monotonic()
        if len(self._failures) >= _SWEEP_AT:
            for key, failures in list(self._failures.items()):
                self._expire(failures, now)
                if not failures:
                    del self._failures[key]
        self._failures.setdefault((account, client), deque()).append(now)

    def succeeded(self, account: str, client: str) -> None:
        self._failures.pop((account, client), None)

    def _expire(self, failures: deque[float], now: float) -> None:
        while failures and failures[0] <= now - self.window:
            failures.popleft()
