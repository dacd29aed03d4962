"""Sizes and times as the console and the CLI print them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from registry.readable import size, when


@pytest.mark.parametrize(
    ("n", "shown"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (20 * 1024**2 + 1, "20.0 MiB"),
     (3 * 1024**4, "3.0 TiB")],
)  # fmt: skip
def test_sizes(n: int, shown: str) -> None:
    assert size(n) == shown


@pytest.mark.parametrize(
    ("moment", "shown"),
    [
        ("2026-11-30T12:00:00.123456789Z", "2026-11-30 12:00 UTC"),  # Go's nanoseconds
        ("2026-11-30T12:00:00Z", "2026-11-30 12:00 UTC"),
        ("2023-05-01T10:20:30.5+02:00", "2023-05-01 08:20 UTC"),
        (datetime(2026, 1, 2, 3, 4, tzinfo=timezone(timedelta(hours=-5))), "2026-01-02 08:04 UTC"),
        (datetime(2026, 1, 2, 3, 4, tzinfo=UTC), "2026-01-02 03:04 UTC"),
        ("yesterday", "yesterday"),  # a config may say anything: shown as it is
        ("2026-13-40T00:00:00Z", "2026-13-40T00:00:00Z"),
        (None, ""),
    ],
)
def test_times(moment: datetime | str | None, shown: str) -> None:
    assert when(moment) == shown
