"""Total parsers for the numbers and JSON documents that clients (and upstreams) send.

Python's own parsers are not total on hostile input: `str.isdigit` admits `²` and other
digits `int` refuses, `int` refuses more than 4,300 digits, and `json.loads` raises
RecursionError on deep nesting. Everything here either returns a value or raises
ValueError (or a subclass) with a message fit for the client.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

# 20 digits hold every 64-bit number: any byte count or offset a store can have.
MAX_DIGITS = 20
_DECIMAL = re.compile(f"[0-9]{{1,{MAX_DIGITS}}}", re.ASCII)
# Manifests nest four or five levels; annotations and configs a few more.
DEFAULT_JSON_DEPTH = 64


def decimal(text: str) -> int | None:
    """A non-negative ASCII decimal of at most 20 digits, or None for anything else."""
    return int(text) if _DECIMAL.fullmatch(text) else None


def content_length(headers: Mapping[str, str]) -> int | None:
    """A message's Content-Length, or None when it has none that `decimal` takes."""
    return decimal(headers.get("content-length", "").strip())


class JSONRejected(ValueError):
    """A document that is not JSON, or nests deeper than allowed."""


def _no_constants(name: str) -> Any:
    raise JSONRejected(f"{name} is not JSON")


def json_document(raw: bytes | str, max_depth: int = DEFAULT_JSON_DEPTH) -> Any:
    """Parse strict JSON (no NaN or Infinity) nested at most `max_depth` arrays and
    objects deep."""
    try:
        doc = json.loads(raw, parse_constant=_no_constants)
    except RecursionError:
        raise JSONRejected(f"the document nests deeper than {max_depth} levels") from None
    except JSONRejected:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        raise JSONRejected(f"not valid JSON: {str(exc)[:200]}") from None
    if _depth_exceeds(doc, max_depth):
        raise JSONRejected(f"the document nests deeper than {max_depth} levels")
    return doc


def _depth_exceeds(doc: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than `limit` deep; iterative, so the walk
    itself cannot overflow the stack."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
