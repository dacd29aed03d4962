"""HTTP Range for blob GET, and Content-Range for upload chunks."""

from __future__ import annotations

import re

from registry.errors import RangeInvalid
from registry.parse import MAX_DIGITS

# ASCII digits, at most 20 of them: `\d` would admit other scripts' digits, and `int`
# refuses more than 4,300 digits.
_N = f"[0-9]{{1,{MAX_DIGITS}}}"
_BYTES_RANGE = re.compile(rf"bytes=({_N})?-({_N})?", re.ASCII)
_CHUNK_RANGE = re.compile(rf"(?:bytes )?({_N})-({_N})(?:/(?:{_N}|\*))?", re.ASCII)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte positions asked for, or None for the whole blob. A single
    byte range is honoured; other units are ignored as RFC 9110 allows."""
    if header is None or not header.strip().startswith("bytes="):
        return None
    match = _BYTES_RANGE.fullmatch(header.strip().replace(" ", ""))
    unsatisfiable = RangeInvalid(
        {"range": header[:100], "size": size},
        message=f"range {header[:100]!r} cannot be served from a blob of {size} bytes",
        headers={"Content-Range": f"bytes */{size}"},
    )
    if match is None or match.groups() == (None, None):
        raise unsatisfiable
    first, last = (group or "" for group in match.groups())
    if first == "":
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise unsatisfiable
        return max(size - suffix, 0), size - 1
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if start >= size or (last != "" and int(last) < start):
        raise unsatisfiable
    return start, end


def parse_content_range(header: str | None) -> tuple[int, int] | None:
    """The (start, end) of an upload chunk, or None without the header."""
    if header is None:
        return None
    match = _CHUNK_RANGE.fullmatch(header.strip())
    if match is None or int(match.group(2)) < int(match.group(1)):
        raise RangeInvalid(
            {"contentRange": header[:100]},
            message=f"Content-Range {header[:100]!r} is not of the form <start>-<end>",
        )
    return int(match.group(1)), int(match.group(2))
