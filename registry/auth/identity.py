"""Who is asking: a user, a robot account, or nobody."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

ROBOT_PREFIX = "robot$"

# (namespace pattern, actions): what a personal access token allows, within what its
# owner may do.
Limits = tuple[tuple[str, frozenset[str]], ...]


@dataclass(frozen=True, slots=True)
class Identity:
    # The account name as it appears in a token's `sub`; empty for anonymous.
    name: str
    kind: Literal["user", "robot", "anonymous"]
    admin: bool = False
    # A login with a personal access token acts within the token's scopes (never as an
    # admin, and never managing accounts); `token_id` names the token.
    limits: Limits | None = None
    token_id: int | None = None

    @property
    def anonymous(self) -> bool:
        return self.kind == "anonymous"

    def limit(self, namespace: str, actions: frozenset[str]) -> frozenset[str]:
        """`actions` cut down to what this identity's token allows in `namespace`."""
        if self.limits is None:
            return actions
        allowed: set[str] = set()
        for pattern, granted in self.limits:
            if fnmatchcase(namespace, pattern):
                allowed |= granted
        return actions & allowed


ANONYMOUS = Identity("", "anonymous")
# Whoever calls an open registry (auth off): allowed everything, as Distribution's default.
OPEN = Identity("", "user", admin=True)


def kind_of(subject: str) -> Literal["user", "robot", "anonymous"]:
    """The kind of account a token's `sub` names."""
    if not subject:
        return "anonymous"
    return "robot" if subject.startswith(ROBOT_PREFIX) else "user"
