"""Sizes and times as people read them (`20.3 MiB`, `2026-11-30 12:00 UTC`), in the
console, the CLI and what garbage collection explains alike."""

from __future__ import annotations

import re
from datetime import UTC, datetime


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def duration(seconds: float) -> str:
    """A setting's span of time, as an operator writes it: 90 s, 5 min, 1 hour."""
    if seconds < 120:
        return f"{seconds:g} s"
    if seconds < 3600:
        return f"{seconds / 60:g} min"
    hours = seconds / 3600
    return f"{hours:g} hour{'' if hours == 1 else 's'}"


# RFC 3339 as image configs write it: up to nanoseconds, which Python's parser does not
# take; the digits past microseconds are dropped.
_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d)(\.\d{1,6})?\d*(Z|[+-]\d\d:\d\d)?$")


def when(moment: datetime | str | None) -> str:
    """A time in UTC to the minute; a text that is no time, as is (an image config may
    say anything)."""
    if isinstance(moment, str):
        text = moment
        found = _RFC3339.match(text.strip())
        if found is None:
            return text
        seconds, fraction, zone = found.groups()
        try:
            moment = datetime.fromisoformat(seconds + (fraction or "") + (zone or "Z"))
        except ValueError:
            return text
    if moment is None:
        return ""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")
