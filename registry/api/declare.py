"""The /api/v1/ operations, declared once: each handler is registered with its method,
path, summary, the pydantic models of its query, body and answer, and the errors it can
give. The routes and the OpenAPI 3.1 document (/api/v1/openapi.json) are both made from
these declarations, so the document cannot drift from what the handlers do.

An operation's `access` runs first, before its query and body are read, so a caller
who may not do it learns nothing more than that; what it returns is the handler's
`caller`. A handler is called as `handler(request, **path_params, caller=..., query=...,
body=...)` (the last three when declared) and returns an instance of its response
model, a `Page` of them, or None for 204. Bodies and queries that do not fit their model
get 400 INVALID naming the field; answers are serialized through their model, so a
field a model does not declare never leaves the server.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from registry.api.common import json_object
from registry.errors import BodyTypeUnsupported, Invalid
from registry.paging import DEFAULT_SIZE, Window

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")  # a row a page is made from
_MAX_BODY = 64 * 1024
_PATH_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")
# What every error answer looks like (registry/errors.py).
ERROR_STATUSES = {
    400: "the request is invalid (INVALID, NAME_INVALID, PAGINATION_NUMBER_INVALID...)",
    401: "authentication required (UNAUTHORIZED)",
    403: "the caller may not do this (DENIED)",
    404: "no such thing (NOT_FOUND, NAME_UNKNOWN, MANIFEST_UNKNOWN...)",
    409: "conflicts with what is there (CONFLICT, or DENIED by an immutable-tag rule)",
    413: "the request body is too large (SIZE_INVALID)",
    415: "the request body is not Content-Type: application/json (UNSUPPORTED)",
    414: "the query string is too long (SIZE_INVALID)",
    429: "too many requests (TOOMANYREQUESTS)",
    503: "the database or storage is unavailable (UNAVAILABLE)",
}
# Every operation can meet these (the limits of registry/api/limits.py among them).
COMMON_ERRORS = (400, 401, 403, 414, 429, 503)


class Body(BaseModel):
    """A request body: JSON types as sent (no "1" for 1), no unknown fields."""

    model_config = ConfigDict(strict=True, extra="forbid")


class Answer(BaseModel):
    """An answer's body."""


class Query(BaseModel):
    """Query parameters: text coerced to the declared types."""

    model_config = ConfigDict(extra="ignore")


class ErrorEntry(Answer):
    code: str
    message: str
    detail: Any = None


class Errors(Answer):
    """The error format of the distribution spec, used by every endpoint."""

    errors: list[ErrorEntry]


class PageQuery(Query):
    n: int | None = Field(None, ge=1, le=10_000, description="at most this many items")
    last: str | None = Field(None, description="the last item of the page before")

    @property
    def size(self) -> int:
        return self.n or DEFAULT_SIZE


def id_key(last: str | None) -> int | None:
    """The `last` of a list keyed by row ids (newest first): the id to go below."""
    if not last:
        return None
    if not last.isdigit():
        raise Invalid({"last": last[:50]}, message="last: expected the key of a Link header")
    return min(int(last), 2**63 - 1)  # past every id column, and within its type


@dataclass(frozen=True)
class Page(Generic[M]):
    """One page of a list: `last` is the key to ask for the next page with, or None
    when this is the last page."""

    items: list[M]
    last: str | None
    limit: int | None

    @classmethod
    def window(
        cls, found: Window[R], answer: Callable[[R], M], key: Callable[[M], str], size: int
    ) -> Page[M]:
        """A page of answers made from a page of rows (registry/paging.py)."""
        items = [answer(row) for row in found.items]
        return cls(items, key(items[-1]) if found.more and items else None, size)

    @classmethod
    def of(cls, items: Sequence[M], key: Callable[[M], str], query: PageQuery) -> Page[M]:
        """A page of a short list held whole (accounts, namespaces), in `key` order."""
        ordered = sorted(items, key=key)
        if query.last is not None:
            ordered = [item for item in ordered if key(item) > query.last]
        if query.n is None or len(ordered) <= query.n:
            return cls(ordered, None, query.n)
        return cls(ordered[: query.n], key(ordered[query.n - 1]), query.n)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # Starlette's template; {name:path} for repository names
    handler: Callable[..., Awaitable[Any]]
    summary: str
    tag: str
    response: type[BaseModel] | None
    status: int
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    errors: tuple[int, ...]
    access: Callable[..., Awaitable[Any]] | None = None
    description: str = ""
    paged: str = ""  # a list answer: the key its items are under
    streams: str = ""  # the media type of an answer the handler streams itself

    @property
    def openapi_path(self) -> str:
        return _PATH_PARAM.sub(r"{\1}", self.path)

    async def __call__(self, request: Request) -> Response:
        kwargs: dict[str, Any] = dict(request.path_params)
        if self.access is not None:
            kwargs["caller"] = await self.access(request, **request.path_params)
        if self.query is not None:
            kwargs["query"] = _validated(self.query, dict(request.query_params), "query")
        if self.body is not None:
            _require_json(request)
            raw = await json_object(request, _MAX_BODY)
            kwargs["body"] = _validated(self.body, raw, "body")
        result = await self.handler(request, **kwargs)
        if isinstance(result, Response):
            return result  # streamed (`streams`)
        if result is None:
            return Response(status_code=self.status)
        if isinstance(result, Page):
            assert self.response is not None
            items = [item.model_dump(mode="json") for item in result.items]
            answer = JSONResponse({self.paged: items}, self.status)
            if result.last is not None:
                # The same query (filters, order) but for the page after `last`.
                query = {k: v for k, v in request.query_params.items() if k not in ("n", "last")}
                query |= {"n": str(result.limit)} if result.limit is not None else {}
                query["last"] = result.last
                answer.headers["Link"] = f'<{request.url.path}?{urlencode(query)}>; rel="next"'

            return answer
        return JSONResponse(result.model_dump(mode="json"), self.status)


def _require_json(request: Request) -> None:
    """A body in any other type is refused: an HTML form, or a text/plain fetch, can be sent
    by any web page with the credentials a browser keeps for this host (a cross-site
    POST of text/plain made an admin account); application/json cannot, unless this
    host allows it (CORS), and it does not."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise BodyTypeUnsupported(
            {"content_type": request.headers.get("content-type")},
            message="the request body must be sent as Content-Type: application/json, not "
            + (repr(media_type) if media_type else "without a Content-Type"),
        )


def _validated(model: type[M], raw: dict[str, Any], where: str) -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problem = exc.errors()[0]
        name = ".".join(str(part) for part in problem["loc"]) or where
        raise Invalid(
            {"field": name}, message=f"{where} field {name!r}: {problem['msg'].lower()}"
        ) from None


@dataclass
class Operations:
    """The operations one module of api/ declares, in order (`OPERATIONS.operation(...)`
    on each handler); api/routes.py puts the modules' together into the Api it serves."""

    tag: str  # the OpenAPI tag of every operation here
    operations: list[Operation] = field(default_factory=list)

    def operation(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        response: type[BaseModel] | None = None,
        status: int | None = None,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        errors: Sequence[int] = (),
        paged: str = "",
        streams: str = "",
        access: Callable[..., Awaitable[Any]] | None = None,
    ) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
        def register(handler: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            self.operations.append(
                Operation(
                    method=method,
                    path=path,
                    handler=handler,
                    summary=summary,
                    tag=self.tag,
                    response=response,
                    status=status or (200 if response is not None or streams else 204),
                    body=body,
                    query=query,
                    errors=tuple(sorted({*COMMON_ERRORS, *errors, *([415] if body else [])})),
                    access=access,
                    description=(handler.__doc__ or "").strip(),
                    paged=paged,
                    streams=streams,
                )
            )
            return handler

        return register


@dataclass
class Api:
    """An API of the operations of some modules, in their order: its routes and its
    OpenAPI document."""

    title: str
    version: str
    parts: Sequence[Operations]

    @property
    def operations(self) -> list[Operation]:
        return [op for part in self.parts for op in part.operations]

    def routes(self) -> list[Route]:
        """One Starlette route per path, dispatching on the method, in declaration
        order (a more specific path is declared before one it would also match)."""
        by_path: dict[str, dict[str, Operation]] = {}
        for op in self.operations:
            by_path.setdefault(op.path, {})[op.method] = op
        routes = []
        for path, methods in by_path.items():

            async def dispatch(request: Request, methods: dict[str, Operation] = methods) -> Any:
                return await methods[request.method](request)

            routes.append(Route(path, dispatch, methods=list(methods)))
        return routes

    def document(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document of every operation."""
        models: set[type[BaseModel]] = {Errors}
        for op in self.operations:
            models.update(m for m in (op.response, op.body) if m is not None)
        ordered = sorted(models, key=lambda m: m.__name__)
        _, schemas = models_json_schema(
            [(m, "serialization" if issubclass(m, Answer) else "validation") for m in ordered],
            ref_template="#/components/schemas/{model}",
        )
        paths: dict[str, dict[str, Any]] = {}
        for op in self.operations:
            paths.setdefault(op.openapi_path, {})[op.method.lower()] = _describe(op)
        return {
            "openapi": "3.1.0",
            "info": {"title": self.title, "version": self.version},
            "paths": paths,
            "components": {
                "schemas": schemas.get("$defs", {}),
                "securitySchemes": {
                    "basic": {"type": "http", "scheme": "basic"},
                    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                },
            },
            "security": [{"basic": []}, {"bearer": []}],
        }


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _describe(op: Operation) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
            **({"description": "may contain /"} if kind == ":path" else {}),
        }
        for name, kind in re.findall(r"\{(\w+)(:\w+)?\}", op.path)
    ]
    if op.query is not None:
        query = op.query.model_json_schema()
        for name, prop in query.get("properties", {}).items():
            prop.pop("title", None)
            # A parameter left out is the null of its model: in a query, not a value.
            branches = [b for b in prop.pop("anyOf", []) if b != {"type": "null"}]
            if len(branches) == 1:
                prop.update(branches[0])
            if prop.get("default", ...) is None:
                del prop["default"]
            parameters.append(
                {
                    "name": name,
                    "in": "query",
                    "required": name in query.get("required", []),
                    "schema": prop,
                    **({"description": prop["description"]} if "description" in prop else {}),
                }
            )
    described: dict[str, Any] = {
        "summary": op.summary,
        "operationId": f"{op.method.lower()}_{op.handler.__name__}",
        "tags": [op.tag],
        "parameters": parameters,
        "responses": {},
    }
    if op.description:
        described["description"] = op.description
    if op.body is not None:
        described["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": _ref(op.body)}},
        }
    if op.streams:
        described["responses"][str(op.status)] = {
            "description": op.summary,
            "content": {op.streams: {"schema": {"type": "string"}}},
        }
    elif op.response is None:
        described["responses"][str(op.status)] = {"description": "done"}
    else:
        answer: dict[str, Any] = _ref(op.response)
        headers = {}
        if op.paged:
            key = op.paged
            answer = {
                "type": "object",
                "properties": {key: {"type": "array", "items": answer}},
                "required": [key],
            }
            headers["Link"] = {
                "description": 'the next page: <...?n=&last=>; rel="next"',
                "schema": {"type": "string"},
            }
        described["responses"][str(op.status)] = {
            "description": op.summary,
            "content": {"application/json": {"schema": answer}},
            **({"headers": headers} if headers else {}),
        }
    for status in op.errors:
        described["responses"][str(status)] = {
            "description": ERROR_STATUSES[status],
            "content": {"application/json": {"schema": _ref(Errors)}},
        }
    return described


def openapi(api: Api) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint of the API's document, made on the first request and kept."""

    @functools.cache
    def body() -> bytes:
        return bytes(JSONResponse(api.document()).body)

    async def document(request: Request) -> Response:
        return Response(body(), media_type="application/json")

    return document
