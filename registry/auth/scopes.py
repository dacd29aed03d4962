"""Access scopes as the Docker token spec writes them: `repository:team/app:pull,push`.

A scope names a resource (type and name) and the actions asked for or granted on it.
The same shape is the `access` claim of a token.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from registry.errors import RegistryError
from registry.names import check_name

PULL, PUSH, DELETE = "pull", "push", "delete"
# In the order of what they allow, for everything that lists them (forms, grants).
ACTIONS_IN_ORDER = (PULL, PUSH, DELETE)
REPOSITORY_ACTIONS = frozenset(ACTIONS_IN_ORDER)
CATALOG = ("registry", "catalog")


class ScopeInvalid(RegistryError):
    code, status, message = "UNSUPPORTED", 400, "malformed scope"


@dataclass(frozen=True, slots=True)
class Scope:
    type: str
    name: str
    actions: frozenset[str]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(sorted(self.actions))}"

    def claim(self) -> dict[str, object]:
        return {"type": self.type, "name": self.name, "actions": sorted(self.actions)}


def repository_scope(name: str, *actions: str) -> Scope:
    return Scope("repository", name, frozenset(actions))


def parse_scope(text: str) -> Scope:
    """Parse one scope. The name may hold colons (a plugin type never does), so the type
    ends at the first colon and the actions start after the last."""
    kind, sep, rest = text.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not kind or not name:
        raise ScopeInvalid(
            {"scope": text[:300]}, message=f"scope {text[:300]!r} is not type:name:actions"
        )
    if kind == "repository":
        check_name(name)
    return Scope(kind, name, frozenset(a for a in actions.split(",") if a))


def parse_scopes(values: Iterable[str]) -> list[Scope]:
    """Scopes from query parameters or an OAuth2 form: each value may hold several,
    separated by spaces."""
    return [parse_scope(part) for value in values for part in value.split()]
