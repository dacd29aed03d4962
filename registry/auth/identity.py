"""Who is asking: a user, a robot account, or nobody."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ROBOT_PREFIX = "robot$"


@dataclass(frozen=True, slots=True)
class Identity:
    # The account name as it appears in a token's `sub`; empty for anonymous.
    name: str
    kind: Literal["user", "robot", "anonymous"]
    admin: bool = False

    @property
    def anonymous(self) -> bool:
        return self.kind == "anonymous"


ANONYMOUS = Identity("", "anonymous")
# Whoever calls an open registry (auth off): allowed everything, as Distribution's default.
OPEN = Identity("", "user", admin=True)


def kind_of(subject: str) -> Literal["user", "robot", "anonymous"]:
    """The kind of account a token's `sub` names."""
    if not subject:
        return "anonymous"
    return "robot" if subject.startswith(ROBOT_PREFIX) else "user"
