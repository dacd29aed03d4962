"""A bounded fuzz of the real app: thousands of malformed and mutated requests (names,
references, digests, upload ids, headers, query parameters, bodies) from a fixed seed.

Every answer must be below 500, every 4xx must be in the spec's error format, and the
content stored before the run (in a namespace the fuzzing account may only pull from)
must come out of it byte for byte the same.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from registry.auth.accounts import Accounts
from registry.mediatypes import OCI_INDEX, OCI_MANIFEST
from tests.api.conftest import PASSWORD
from tests.helpers import basic, index_of, push_blob, push_image, put_manifest, sha256

pytestmark = pytest.mark.anyio

REQUESTS = 2500
SEED = 20261201

NASTY = [
    "",
    ".",
    "..",
    "%2e%2e",
    "..%2f..%2fetc",
    "../../etc/passwd",
    "a/../b",
    "a//b",
    "A",
    "-x",
    "_",
    "a" * 129,
    "a" * 300,
    "x" * 5000,
    "9" * 5000,
    "-1",
    "0",
    "00",
    "1e3",
    "NaN",
    "²",
    "\u0661",
    "ü",
    "*",
    "%00",
    "\x00",
    "{",
    "[]",
    "true",
    " ",
    "\t",
    "sha256:",
    ":",
    "sha256",
    "sha256:" + "g" * 64,
    "sha256:" + "a" * 63,
    "SHA256:" + "a" * 64,
    "sha384:" + "a" * 96,
    "sha512:" + "a" * 128,
    "md5:" + "0" * 32,
    "sha256:" + "a" * 64 + "/x",
    "sha256:" + "0" * 64,
    str(uuid.UUID(int=0)),
    "latest",
    "v1",
    "bytes=0-0",
    "0-0",
    "robot$x",
    "library",
    "team/app",
    "%",
    "%zz",
    "?",
    "#",
    ";",
    "=",
    "&",
    ",",
    "\\",
]
NASTY_BYTES = [b"\x80", b"\xff\xfe", b"\xc3\x28", "é".encode("latin-1"), b"\x7f"]
HEADERS = [
    "range",
    "content-range",
    "content-type",
    "accept",
    "authorization",
    "content-length",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "transfer-encoding",
]
PARAMS = [
    "n",
    "last",
    "digest",
    "mount",
    "from",
    "tag",
    "artifactType",
    "scope",
    "service",
    "account",
    "offline_token",
    "client_id",
]


@dataclass
class Call:
    method: str
    path: str
    params: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str | bytes] = field(default_factory=dict)
    body: bytes | None = None

    def describe(self) -> str:
        body = None if self.body is None else self.body[:80]
        return (
            f"{self.method} {self.path[:120]} {self.params!r:.200} {self.headers!r:.200} {body!r}"
        )


@dataclass
class Seeded:
    """What is stored before the fuzz, and what the templates point at."""

    manifests: dict[str, bytes]
    tags: dict[str, str]
    blobs: dict[str, bytes]
    fuzz_blob: str
    fuzz_manifest: bytes
    upload: str


def _json_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 2**63, 10**30, 1.5, -0.0, 1e308])
    if kind in (3, 4, 5):
        return rng.choice(NASTY)
    if kind in (6, 7):
        return [_json_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(NASTY): _json_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def _mutate_document(rng: random.Random, doc: Any) -> Any:
    """Replace one value somewhere in a JSON document with something else."""
    if isinstance(doc, dict) and doc and rng.random() < 0.8:
        key = rng.choice(list(doc))
        if rng.random() < 0.15:
            return {k: v for k, v in doc.items() if k != key}
        return {**doc, key: _mutate_document(rng, doc[key])}
    if isinstance(doc, list) and doc and rng.random() < 0.8:
        i = rng.randrange(len(doc))
        return [*doc[:i], _mutate_document(rng, doc[i]), *doc[i + 1 :]]
    return _json_value(rng)


def _body(rng: random.Random, valid: bytes) -> bytes:
    choice = rng.randrange(8)
    if choice == 0:
        return valid
    if choice == 1:
        return valid[: rng.randrange(len(valid) + 1)]
    if choice == 2:
        depth = rng.choice([65, 1000, 20_000])
        return b'{"schemaVersion": 2, "a": ' + b"[" * depth + b"]" * depth + b"}"
    if choice == 3:
        return rng.randbytes(rng.randrange(200))
    if choice == 4:
        return json.dumps(_json_value(rng)).encode()
    if choice == 5:
        flipped = bytearray(valid)
        for _ in range(rng.randrange(1, 5)):
            if flipped:
                flipped[rng.randrange(len(flipped))] = rng.randrange(256)
        return bytes(flipped)
    try:
        doc = json.loads(valid)
    except (ValueError, RecursionError):
        return valid + rng.choice(NASTY).encode()
    return json.dumps(_mutate_document(rng, doc)).encode()


def _templates(seeded: Seeded) -> list[Call]:
    repo, blob, upload = "fuzz/app", seeded.fuzz_blob, seeded.upload
    manifest = seeded.fuzz_manifest
    account = json.dumps({"name": "newuser", "password": "long enough pass"}).encode()
    return [
        Call("GET", "/v2/"),
        Call("GET", "/v2/_catalog", [("n", "2"), ("last", "a")]),
        Call("GET", f"/v2/{repo}/tags/list", [("n", "1")]),
        Call("GET", f"/v2/{repo}/manifests/v1", headers={"accept": OCI_MANIFEST}),
        Call("HEAD", f"/v2/{repo}/manifests/v1"),
        Call(
            "PUT",
            f"/v2/{repo}/manifests/new",
            headers={"content-type": OCI_MANIFEST},
            body=manifest,
        ),
        Call("PUT", f"/v2/{repo}/manifests/{sha256(manifest)}", body=manifest),
        Call("DELETE", f"/v2/{repo}/manifests/gone"),
        Call("POST", f"/v2/{repo}/blobs/uploads/"),
        Call("POST", f"/v2/{repo}/blobs/uploads/", [("digest", sha256(b"abc"))], body=b"abc"),
        Call("POST", f"/v2/{repo}/blobs/uploads/", [("mount", blob), ("from", "keep/app")]),
        Call(
            "PATCH",
            f"/v2/{repo}/blobs/uploads/{upload}",
            headers={"content-range": "0-2"},
            body=b"abc",
        ),
        Call(
            "PUT", f"/v2/{repo}/blobs/uploads/{upload}", [("digest", sha256(b"abc"))], body=b"abc"
        ),
        Call("GET", f"/v2/{repo}/blobs/uploads/{upload}"),
        Call("DELETE", f"/v2/{repo}/blobs/uploads/{upload}"),
        Call("GET", f"/v2/{repo}/blobs/{blob}", headers={"range": "bytes=1-3"}),
        Call("HEAD", f"/v2/{repo}/blobs/{blob}"),
        Call("DELETE", f"/v2/{repo}/blobs/{blob}"),
        Call("GET", f"/v2/{repo}/referrers/{sha256(manifest)}", [("artifactType", "a/b")]),
        Call("GET", "/token", [("service", "registry"), ("scope", f"repository:{repo}:pull")]),
        Call(
            "POST",
            "/token",
            headers={"content-type": "application/x-www-form-urlencoded"},
            body=f"grant_type=password&username=fuzzer&password={PASSWORD}&service=registry".encode(),
        ),
        Call("GET", "/health"),
        Call("GET", "/ready"),
        Call("GET", "/metrics"),
        Call("GET", "/api/v1/mirror"),
        Call("GET", "/api/v1/users"),
        Call("POST", "/api/v1/users", body=account),
        Call("PATCH", "/api/v1/users/fuzzer", body=b'{"disabled": false}'),
        Call("POST", "/api/v1/namespaces", body=b'{"name": "x", "public": true}'),
        Call("PATCH", "/api/v1/namespaces/fuzz", body=b'{"public": false}'),
        Call("GET", "/api/v1/namespaces/fuzz/members"),
        Call("PUT", "/api/v1/namespaces/fuzz/members/fuzzer", body=b'{"role": "owner"}'),
        Call("POST", "/api/v1/namespaces/fuzz/robots", body=b'{"name": "ci", "actions": ["pull"]}'),
        Call("DELETE", "/api/v1/namespaces/fuzz/robots/robot$fuzz+ci"),
    ]


def _mutate(rng: random.Random, call: Call) -> Call:
    path = call.path
    params = list(call.params)
    headers = dict(call.headers)
    body = call.body
    for _ in range(rng.randrange(1, 4)):
        what = rng.randrange(5)
        if what == 0:
            parts = path.split("/")
            i = rng.randrange(1, len(parts))
            parts[i] = rng.choice(NASTY)
            path = "/".join(parts)
        elif what == 1:
            value = rng.choice(NASTY) if rng.random() < 0.9 else "y" * 10_000
            params.append((rng.choice(PARAMS), value))
        elif what == 2:
            value: str | bytes = rng.choice(NASTY)
            if rng.random() < 0.3:
                value = rng.choice(NASTY_BYTES)
            name = rng.choice(HEADERS)
            if name == "authorization" and rng.random() < 0.7:
                value = rng.choice(["Basic ", "Bearer ", "basic ", "Negotiate "]) + str(
                    rng.choice(NASTY)
                )
            headers[name] = value
        elif what == 3 and body is not None:
            body = _body(rng, body)
        elif what == 4:
            body = _body(rng, call.body or b"{}")
    return Call(call.method, path, params, headers, body)


@pytest.fixture
def storage_env() -> dict[str, str]:
    """The filesystem store only: the fuzz is of parsers, not of storage."""
    return {}


@pytest.fixture
async def seeded(auth_app: Starlette, accounts: Accounts) -> AsyncIterator[Seeded]:
    await accounts.add_user("root", PASSWORD, admin=True)
    await accounts.add_user("fuzzer", PASSWORD)
    await accounts.add_namespace("keep", public=False, owner="root")
    await accounts.add_namespace("fuzz", public=False, owner="root")
    await accounts.set_member("keep", "fuzzer", "guest")
    await accounts.set_member("fuzz", "fuzzer", "developer")
    transport = httpx.ASGITransport(app=auth_app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://registry.test", headers=basic("root", PASSWORD)
    ) as root:
        manifests: dict[str, bytes] = {}
        tags: dict[str, str] = {}
        children = []
        for tag in ("v1", "v2"):
            digest, body = await push_image(root, "keep/app", tag, layers=[tag.encode() * 100])
            manifests[digest], tags[tag] = body, digest
            children.append((OCI_MANIFEST, body, {"os": "linux", "architecture": tag}))
        index = index_of(children)
        tags["multi"] = await put_manifest(root, "keep/app", "multi", index, OCI_INDEX)
        manifests[tags["multi"]] = index
        blobs = {sha256(tag.encode() * 100): tag.encode() * 100 for tag in ("v1", "v2")}
        _, fuzz_manifest = await push_image(root, "fuzz/app", "v1", layers=[b"fuzz layer"])
        fuzz_blob = await push_blob(root, "fuzz/app", b"0123456789")
        r = await root.post("/v2/fuzz/app/blobs/uploads/")
        upload = r.headers["Docker-Upload-UUID"]
        yield Seeded(manifests, tags, blobs, fuzz_blob, fuzz_manifest, upload)


async def test_malformed_requests_never_get_5xx_or_change_what_is_stored(
    auth_app: Starlette, seeded: Seeded
) -> None:
    rng = random.Random(SEED)
    templates = _templates(seeded)
    transport = httpx.ASGITransport(
        app=auth_app, client=("10.1.2.3", 5000), raise_app_exceptions=False
    )
    failures: list[str] = []
    sent = 0
    statuses: dict[int, int] = {}
    async with httpx.AsyncClient(transport=transport, base_url="http://registry.test") as c:
        for i in range(REQUESTS):
            call = rng.choice(templates)
            call = _mutate(rng, call) if i % 10 else call
            headers: dict[str, str | bytes] = {
                "authorization": basic("fuzzer", PASSWORD)["Authorization"]
            }
            # On the wire a header is bytes: non-ASCII text goes as its UTF-8 bytes.
            headers.update(
                (k, v.encode() if isinstance(v, str) else v) for k, v in call.headers.items()
            )
            try:
                request = c.build_request(
                    call.method, call.path, params=call.params, headers=headers, content=call.body
                )
            except (httpx.InvalidURL, UnicodeEncodeError, ValueError, TypeError):
                continue  # not even sendable by a client
            r = await c.send(request)
            sent += 1
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code >= 500:
                failures.append(f"{r.status_code} for {call.describe()}: {r.text[:200]}")
            elif r.status_code >= 400 and call.method != "HEAD" and not _spec_error(r):
                failures.append(f"{r.status_code} not in the error format: {call.describe()}")
    assert not failures, "\n".join(failures[:20])
    assert sent > REQUESTS * 0.9, f"only {sent} of {REQUESTS} requests could be sent"
    # The fuzz reached past the gate and the parsers, not only 401s.
    assert sum(n for s, n in statuses.items() if 200 <= s < 300) > 100, statuses
    assert sum(statuses.get(s, 0) for s in (400, 404, 416)) > 300, statuses

    async with httpx.AsyncClient(
        transport=transport, base_url="http://registry.test", headers=basic("root", PASSWORD)
    ) as root:
        for tag, digest in seeded.tags.items():
            r = await root.get(f"/v2/keep/app/manifests/{tag}", headers={"accept": "*/*"})
            assert r.headers["Docker-Content-Digest"] == digest
            assert r.content == seeded.manifests[digest]
        for digest, data in seeded.blobs.items():
            assert (await root.get(f"/v2/keep/app/blobs/{digest}")).content == data
        listed = (await root.get("/v2/keep/app/tags/list")).json()["tags"]
        assert listed == sorted(seeded.tags)


def _spec_error(r: httpx.Response) -> bool:
    try:
        errors = r.json()["errors"]
    except (ValueError, KeyError, TypeError):
        return False
    return bool(errors) and all(
        isinstance(e.get("code"), str) and isinstance(e.get("message"), str) for e in errors
    )
