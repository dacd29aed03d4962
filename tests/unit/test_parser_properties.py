"""Every parser of client input is total: for any input it returns a value that keeps its
promise, or raises the registry's own 4xx error; never anything else (a 500).
Property-based, with hypothesis."""

from __future__ import annotations

import base64
import contextlib
import json
import re
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.requests import Request

from registry.api.access import decode_basic
from registry.api.common import page_params
from registry.api.ranges import parse_content_range, parse_range
from registry.auth.scopes import parse_scope
from registry.digest import Digest
from registry.errors import RegistryError
from registry.mediatypes import INDEX_TYPES, MANIFEST_TYPES, accepts, parse_manifest
from registry.names import MAX_NAME_LENGTH, check_name, check_tag, is_reference
from registry.parse import MAX_DIGITS, decimal, json_document
from registry.storage.base import blob_key

COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAMES = st.from_regex(rf"\A{COMPONENT}(?:/{COMPONENT}){{0,3}}\Z").filter(
    lambda n: len(n) <= MAX_NAME_LENGTH
)
TAGS = st.from_regex(r"\A[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}\Z")
HEX = st.text("0123456789abcdef", min_size=64, max_size=64)
DIGESTS = HEX.map(lambda h: f"sha256:{h}")
# Text a client can put in a path, a header or a query: anything, with the characters
# that matter to these grammars more likely than at random.
NASTY = st.text(
    st.one_of(
        st.sampled_from("0123456789:/.-_,=+ *abcdefABCDEF%\x00\n²\u0661\x80"),
        st.characters(),
    ),
    max_size=300,
)


def _total(call: Any, *args: Any) -> Any:
    """Call a parser; a RegistryError must be a 4xx, and nothing else may escape."""
    try:
        return call(*args)
    except RegistryError as exc:
        assert 400 <= exc.status < 500, (exc.status, exc.text)
        return exc


@given(NASTY)
def test_names_are_checked_totally(text: str) -> None:
    result = _total(check_name, text)
    if not isinstance(result, RegistryError):
        assert re.fullmatch(rf"{COMPONENT}(?:/{COMPONENT})*", result)
        assert len(result) <= MAX_NAME_LENGTH and ".." not in result.split("/")


@given(NAMES)
def test_valid_names_are_accepted(name: str) -> None:
    assert check_name(name) == name


@given(NASTY)
def test_references_are_checked_totally(text: str) -> None:
    valid = is_reference(text)
    tag = _total(check_tag, text)
    digest = _total(Digest.parse, text)
    assert valid == (not isinstance(tag, RegistryError) or not isinstance(digest, RegistryError))


@given(TAGS)
def test_valid_tags_are_references(tag: str) -> None:
    assert check_tag(tag) == tag and is_reference(tag)


@given(NASTY)
def test_digests_never_become_odd_paths(text: str) -> None:
    result = _total(Digest.parse, text)
    if isinstance(result, Digest):
        assert str(result) == text
        assert re.fullmatch(r"blobs/sha(256|512)/[0-9a-f]{2}/[0-9a-f]{64,128}", blob_key(result))


@given(DIGESTS)
def test_valid_digests_round_trip(text: str) -> None:
    assert str(Digest.parse(text)) == text and is_reference(text)


@given(
    st.one_of(NASTY, st.from_regex(r"\Abytes= ?[0-9]{0,25}-[0-9]{0,25}\Z")), st.integers(0, 2**63)
)
def test_ranges_are_total_and_inside_the_blob(header: str, size: int) -> None:
    result = _total(parse_range, header, size)
    if isinstance(result, tuple):
        first, last = result
        assert 0 <= first <= last < size


@given(st.one_of(NASTY, st.from_regex(r"\A(bytes )?[0-9]{1,25}-[0-9]{1,25}(/[0-9*]{1,5})?\Z")))
def test_content_ranges_are_total(header: str) -> None:
    result = _total(parse_content_range, header)
    if isinstance(result, tuple):
        start, end = result
        assert 0 <= start <= end < 10**MAX_DIGITS


@given(st.one_of(NASTY, st.text("0123456789", max_size=5000)))
def test_decimals_are_total(text: str) -> None:
    value = decimal(text)
    if value is not None:
        assert text.isascii() and value == int(text) and len(text) <= MAX_DIGITS
    else:
        assert not (text.isascii() and text.isdigit() and len(text) <= MAX_DIGITS)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=30,
)


@given(st.one_of(st.binary(max_size=500), JSON.map(lambda doc: json.dumps(doc).encode())))
def test_json_documents_are_total(raw: bytes) -> None:
    with contextlib.suppress(ValueError):
        json_document(raw, 8)


@given(st.integers(1, 3000))
def test_json_nesting_is_bounded(depth: int) -> None:
    raw = b"[" * depth + b"]" * depth
    try:
        json_document(raw, 64)
    except ValueError as exc:
        assert depth > 64 and "deeper" in str(exc)
    else:
        assert depth <= 64


def _descriptor_like() -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(
        {},
        optional={
            "mediaType": st.one_of(st.sampled_from(sorted(MANIFEST_TYPES)), JSON),
            "digest": st.one_of(DIGESTS, JSON),
            "size": st.one_of(st.integers(-5, 2**70), JSON),
            "platform": st.one_of(st.fixed_dictionaries({"os": st.just("linux")}), JSON),
            "urls": JSON,
        },
    )


MANIFEST_LIKE = st.fixed_dictionaries(
    {},
    optional={
        "schemaVersion": st.one_of(st.just(2), JSON),
        "mediaType": st.one_of(st.sampled_from(sorted(MANIFEST_TYPES)), JSON),
        "config": st.one_of(_descriptor_like(), JSON),
        "layers": st.one_of(st.lists(_descriptor_like(), max_size=4), JSON),
        "manifests": st.one_of(st.lists(_descriptor_like(), max_size=4), JSON),
        "subject": st.one_of(_descriptor_like(), JSON),
        "artifactType": JSON,
        "annotations": st.one_of(st.dictionaries(st.text(), st.text()), JSON),
    },
)


@given(
    st.one_of(MANIFEST_LIKE.map(lambda d: json.dumps(d).encode()), st.binary(max_size=300)),
    st.one_of(st.none(), st.sampled_from(sorted(MANIFEST_TYPES)), NASTY),
)
def test_manifests_are_parsed_totally(body: bytes, content_type: str | None) -> None:
    parsed = _total(parse_manifest, body, content_type)
    if isinstance(parsed, RegistryError):
        return
    assert parsed.media_type in MANIFEST_TYPES
    for digest in [*parsed.blobs, *(child.digest for child in parsed.children)]:
        Digest.parse(digest)
    if parsed.media_type in INDEX_TYPES:
        assert not parsed.blobs
    else:
        assert parsed.config in parsed.blobs and not parsed.children


@given(NASTY)
def test_scopes_are_parsed_totally(text: str) -> None:
    result = _total(parse_scope, text)
    if not isinstance(result, RegistryError) and result.type == "repository":
        check_name(result.name)


@given(st.one_of(NASTY, st.binary(max_size=100).map(lambda b: base64.b64encode(b).decode())))
def test_basic_credentials_are_decoded_totally(text: str) -> None:
    pair = decode_basic(text)
    if pair is not None:
        assert pair[0] and isinstance(pair[1], str)


@given(st.lists(NASTY, max_size=3), st.sampled_from(sorted(MANIFEST_TYPES)))
def test_accept_headers_are_read_totally(accept: list[str], media_type: str) -> None:
    assert accepts(accept, media_type) in (True, False)


@pytest.mark.parametrize("depth", [999, 1000, 5000])
def test_the_depths_that_once_escaped(depth: int) -> None:
    body = b'{"schemaVersion":2,"layers":' + b"[" * depth + b"]" * depth + b"}"
    assert _total(parse_manifest, body, None).status == 400


# What a query string can carry once decoded: any text but lone surrogates.
QUERY_TEXT = NASTY.filter(lambda text: not any("\ud800" <= c <= "\udfff" for c in text))


@given(st.one_of(QUERY_TEXT, st.text("0123456789", min_size=1, max_size=30)), QUERY_TEXT)
def test_page_parameters_are_total(n: str, last: str) -> None:
    query = urlencode({"n": n, "last": last}).encode()
    request = Request({"type": "http", "method": "GET", "path": "/", "query_string": query})
    result = _total(page_params, request)
    if not isinstance(result, RegistryError):
        limit, after = result
        assert limit is not None and 0 <= limit < 10**MAX_DIGITS
        assert after == (last or None)
