"""Who and what the code running now serves: a request (set by api/observe.py, and by
the access check once it knows the caller) or background work (`acting_as`). Read by
what records events and by the log format, so neither needs the request passed down.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(slots=True)
class Context:
    # user, robot, anonymous, or system (background work and the CLI)
    actor_kind: str = "system"
    actor: str = "registry"
    # The jti of the bearer token the request came with, if any.
    token: str | None = None
    request_id: str | None = None
    # The client's address (as forwarded by a trusted proxy), the Host it asked for.
    address: str | None = None
    host: str | None = None
    scheme: str = "http"
    method: str | None = None
    user_agent: str | None = None

    def act_as(self, kind: str, name: str, token: str | None = None) -> None:
        self.actor_kind = kind if name else "anonymous"
        self.actor, self.token = name, token


_CURRENT: contextvars.ContextVar[Context | None] = contextvars.ContextVar(
    "registry_context", default=None
)
_BACKGROUND = Context()


def current() -> Context:
    return _CURRENT.get() or _BACKGROUND


@contextlib.contextmanager
def using(context: Context) -> Iterator[Context]:
    token = _CURRENT.set(context)
    try:
        yield context
    finally:
        _CURRENT.reset(token)


def system(name: str) -> Context:
    """The context of background work (gc, retention, cli): its events name it."""
    return Context(actor=name)
