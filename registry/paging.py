"""Pages of a list, fetched one row more than a page holds: that row, if it comes, says
there is a next page. For /v2/'s lists, /api/v1/'s and the console's alike."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

# A page's size when the client names none.
DEFAULT_SIZE = 100


@dataclass(frozen=True, slots=True)
class Window(Generic[T]):
    items: list[T]
    more: bool  # a next page has something

    @classmethod
    def of(cls, rows: Sequence[T], size: int) -> Window[T]:
        """The page of `size` in rows fetched with one more."""
        return cls(list(rows[:size]), len(rows) > size)


async def fetch(get: Callable[[int], Awaitable[Sequence[T]]], size: int) -> Window[T]:
    """A page of at most `size` rows: `get(n)` fetches n rows from where it starts."""
    return Window.of(await get(size + 1), size)
