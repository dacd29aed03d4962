"""Every /api/v1/ answer the test-suite receives, checked against the OpenAPI document:
its status must be one the operation declares, and a JSON body must fit the schema for
that status. tests/conftest.py wraps httpx's send() with `check` for the whole session,
so the API tests, in process and through real servers, all check the document too."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import httpx
from jsonschema import Draft202012Validator

from registry.api import routes  # noqa: F401  (imports every module that declares)
from registry.api.routes import ADMIN_API

DOCUMENT = ADMIN_API.document()
SEEN: Counter[tuple[str, str]] = Counter()


def _pattern(path: str, operation: dict[str, Any]) -> re.Pattern[str]:
    spans = {
        p["name"]: ".+" if "/" in p.get("description", "") else "[^/]+"
        for p in operation["parameters"]
        if p["in"] == "path"
    }
    regex = re.sub(r"\\\{(\w+)\\\}", lambda m: f"(?:{spans[m[1]]})", re.escape(path))
    return re.compile(regex + "$")


# Literal paths first, then the longest: /x/{a}/-/tags before /x/{a} (a name may hold /).
_OPERATIONS = sorted(
    (
        (method.upper(), path, _pattern(path, operation), operation)
        for path, methods in DOCUMENT["paths"].items()
        for method, operation in methods.items()
    ),
    key=lambda o: ("{" in o[1], -len(o[1])),
)


def operation_for(method: str, path: str) -> tuple[str, dict[str, Any]] | None:
    for declared_method, declared_path, pattern, operation in _OPERATIONS:
        if declared_method == method and pattern.match(path):
            return declared_path, operation
    return None


def check(response: httpx.Response) -> None:
    request = response.request
    path = request.url.path
    if not path.startswith("/api/v1/") or path == "/api/v1/openapi.json":
        return
    method = "GET" if request.method == "HEAD" else request.method
    found = operation_for(method, path)
    if found is None:
        if response.status_code in (404, 405, 307, 414):
            # No such operation, and the answer says so (or adds a missing slash), or a
            # limit checked before any route refused the request (a query too long).
            return
        raise AssertionError(
            f"{request.method} {path} answered {response.status_code} "
            "but the OpenAPI document has no such operation"
        )
    declared_path, operation = found
    SEEN[(method, declared_path)] += 1
    answer = operation["responses"].get(str(response.status_code))
    if answer is None:
        raise AssertionError(
            f"{method} {declared_path} answered {response.status_code}, which its OpenAPI "
            f"operation does not declare ({sorted(operation['responses'])}): {response.text}"
        )
    schema = answer.get("content", {}).get("application/json", {}).get("schema")
    if schema is None or request.method == "HEAD" or not response.content:
        return
    validator = Draft202012Validator({**schema, "components": DOCUMENT["components"]})
    problems = sorted(validator.iter_errors(response.json()), key=str)
    if problems:
        raise AssertionError(
            f"{method} {declared_path} {response.status_code}: the body does not fit the "
            f"OpenAPI document: {problems[0].message} at {list(problems[0].absolute_path)}"
        )
