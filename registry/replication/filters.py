"""What a replication rule selects, and where it puts it: globs over repository names
and tags, artifact kinds, and the destination name.

A filter is a list of globs; one that starts with `!` excludes. A name is selected when
some including glob matches it (or there is none) and no excluding glob does. Globs:
`*` any characters but `/`, `**` any characters, `?` one character but `/`, `{a,b}` one
of the alternatives (not nested), everything else literal.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from registry.errors import Invalid
from registry.names import check_name

KINDS = ("image", "index", "artifact")
_MAX_GLOBS = 50
_MAX_GLOB = 255


@lru_cache(maxsize=1024)
def compile_glob(glob: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    while i < len(glob):
        c = glob[i]
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "{":
            end = glob.find("}", i)
            if end < 0 or "{" in glob[i + 1 : end]:
                raise ValueError(f"{glob!r}: a {{ without its }}")
            out.append("(?:" + "|".join(re.escape(a) for a in glob[i + 1 : end].split(",")) + ")")
            i = end + 1
            continue
        elif c == "}":
            raise ValueError(f"{glob!r}: a }} without its {{")
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out))


@dataclass(frozen=True, slots=True)
class Filter:
    """Include and exclude globs; an empty `include` includes everything."""

    include: tuple[str, ...]
    exclude: tuple[str, ...]

    @classmethod
    def of(cls, globs: Sequence[str]) -> Filter:
        return cls(
            tuple(g for g in globs if not g.startswith("!")),
            tuple(g[1:] for g in globs if g.startswith("!")),
        )

    def selects(self, name: str) -> bool:
        if self.include and not any(compile_glob(g).fullmatch(name) for g in self.include):
            return False
        return not any(compile_glob(g).fullmatch(name) for g in self.exclude)

    @property
    def literal(self) -> list[str] | None:
        """The names it includes, when its including globs are plain names (a remote
        that will not list its catalog is asked for those); else None."""
        if not self.include or any(set(g) & set("*?{}") for g in self.include):
            return None
        return list(self.include)


def check_globs(field: str, globs: Sequence[str]) -> list[str]:
    if len(globs) > _MAX_GLOBS:
        raise Invalid(message=f"{field}: at most {_MAX_GLOBS} globs")
    for glob in globs:
        bare = glob.removeprefix("!")
        if not bare or len(glob) > _MAX_GLOB or any(ord(c) < 0x21 for c in glob):
            raise Invalid(
                {field: glob[:80]},
                message=f"{field}: {glob[:80]!r} is not a glob (1 to {_MAX_GLOB} printable "
                "characters, no spaces)",
            )
        try:
            compile_glob(bare)
        except ValueError as exc:
            raise Invalid({field: glob[:80]}, message=f"{field}: {exc}") from None
    return list(globs)


def check_kinds(kinds: Sequence[str]) -> list[str]:
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        raise Invalid(
            {"kinds": list(kinds)[:10]},
            message=f"kinds: expected some of {', '.join(KINDS)}"
            + (f"; unknown: {', '.join(unknown[:5])}" if unknown else ""),
        )
    return [k for k in KINDS if k in kinds]


def destination_name(repository: str, destination: str, strip: int) -> str:
    """Where `repository` goes: its first `strip` components dropped (never the last),
    then `destination` put in front. `library/nginx`, `prod`, 1: `prod/nginx`."""
    parts = repository.split("/")
    kept = parts[min(strip, len(parts) - 1) :]
    return "/".join([destination, *kept] if destination else kept)


def check_destination(destination: str) -> str:
    destination = destination.strip("/")
    if destination:
        check_name(destination)  # each component as a repository's
    return destination
