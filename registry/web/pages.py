"""The console's pages: Jinja2 templates (autoescaped: names, tags, labels and
annotations are the pusher's text) over the services the admin API uses, with the same
permission checks (auth.accounts.allowed, as on /v2/).

Every answer forbids framing and inline scripts (Content-Security-Policy), every form
carries a CSRF token (auth/sessions.py), and a `next` after login may only lead back into
the console.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from registry import context, readable
from registry.auth.accounts import AccountConflict, AccountError, AccountUnknown
from registry.auth.identity import OPEN
from registry.auth.scopes import DELETE, PULL
from registry.auth.sessions import COOKIE, LOGIN_COOKIE, Session, same
from registry.digest import Digest
from registry.errors import Denied, RegistryError, TooManyRequests, Unauthorized
from registry.names import check_name, namespace_of
from registry.paging import fetch
from registry.requests import client_address, registry_of, small_body
from registry.web import urls

HERE = Path(__file__).parent
_PAGE = 50
_MAX_FORM = 16 * 1024
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


TEMPLATES = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True),
)
TEMPLATES.filters["size"] = readable.size
TEMPLATES.filters["when"] = readable.when
TEMPLATES.globals["urls"] = urls


def page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = TEMPLATES.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def see(path: str) -> RedirectResponse:
    """After a form's POST, the page to show next (303: the browser GETs it)."""
    return RedirectResponse(path, status_code=303)


def confirm(
    session: Session, what: str, back: str, action: str, consequence: str, **more: Any
) -> HTMLResponse:
    """The page that asks before a delete: what goes, what follows, Delete or Cancel."""
    return page(
        "confirm.html",
        session=session,
        what=what,
        back=back,
        action=action,
        consequence=consequence,
        **more,
    )


def set_cookie(
    response: Response,
    request: Request,
    key: str,
    value: str,
    age: int,
    same_site: Literal["strict", "lax"] = "strict",
) -> None:
    response.set_cookie(
        key,
        value,
        max_age=age,
        path=urls.HOME(),
        httponly=True,
        samesite=same_site,
        secure=request.url.scheme == "https",
    )


async def _form(request: Request) -> dict[str, list[str]]:
    raw = await small_body(request, _MAX_FORM) or b""
    return parse_qs(raw.decode("utf-8", "replace"), max_num_fields=50)


def field(request: Request, name: str) -> str:
    """A field of the form a console POST sent (checked for its CSRF token already)."""
    values: list[str] = request.state.form.get(name) or [""]
    return values[0]


def grants(request: Request, name: str) -> list[tuple[str, list[str]]]:
    """A textarea of grants, one per line: a namespace or a pattern, =, the actions
    (`team=pull,push`); blank lines are skipped, and the accounts check the rest."""
    found = []
    for line in field(request, name).splitlines():
        if line.strip():
            target, _, actions = line.strip().partition("=")
            found.append((target.strip(), [a.strip() for a in actions.split(",") if a.strip()]))
    return found


def fields(request: Request, name: str) -> list[str]:
    """Every value of a field (checkboxes)."""
    return list(request.state.form.get(name) or [])


def safe_next(target: str | None) -> str:
    """Where to go after login: a console path only, never another site; by default the
    dashboard (which sends those who own no namespace on to the repositories)."""
    if target and target.startswith(urls.HOME()) and "//" not in target and "\\" not in target:
        return target
    return urls.DASHBOARD()


Page = Callable[[Request, Session], Awaitable[Response]]


def console(handler: Page) -> Callable[[Request], Awaitable[Response]]:
    """A page for a logged-in caller (anyone, on an open registry): others go to the
    login page; a refusal or an error of the services is an error page."""

    async def run(request: Request) -> Response:
        registry = registry_of(request)
        fresh = None
        if registry.auth is None or registry.console is None:
            # An open registry has no logins; its forms carry a token from a cookie.
            csrf = request.cookies.get(LOGIN_COOKIE)
            if not csrf:
                csrf = fresh = secrets.token_urlsafe(32)
            session = Session(OPEN, csrf)
        else:
            found = await registry.console.find(request.cookies.get(COOKIE))
            if found is None:
                target = urlencode({"next": safe_next(request.url.path)})
                return see(f"{urls.LOGIN()}?{target}")
            session = found
        context.current().act_as(session.identity.kind, session.identity.name)
        if request.method == "POST":
            request.state.form = await _form(request)
            if fresh is not None or not same(field(request, "csrf"), session.csrf):
                return page(
                    "error.html",
                    403,
                    session=session,
                    title="Refused",
                    message="The form is out of date or came from another site; "
                    "reload the page and try again.",
                )
        try:
            response = await handler(request, session)
        except RegistryError as exc:
            title = "Not found" if exc.status == 404 else "Not done"
            return page("error.html", exc.status, session=session, title=title, message=exc.text)
        except AccountError as exc:  # a name taken, a bad role, the last owner leaving
            status = (
                409
                if isinstance(exc, AccountConflict)
                else 404
                if isinstance(exc, AccountUnknown)
                else 400
            )
            return page("error.html", status, session=session, title="Not done", message=str(exc))
        if fresh is not None:
            set_cookie(response, request, LOGIN_COOKIE, fresh, 12 * 3600)
        return response

    return run


async def _repository(request: Request, session: Session, action: str) -> str:
    """The repository of the path, if the caller may do `action` there; the refusal is
    the same whether it exists or not, as on /v2/."""
    name = check_name(request.path_params["name"])
    auth = registry_of(request).auth
    if auth is None or action in await auth.accounts.allowed(session.identity, namespace_of(name)):
        return name
    if action == PULL:
        raise Denied(message=f"You may not see {name}, or it does not exist.")
    raise Denied(message=f"You may not delete in {name}.")


async def login(request: Request) -> Response:
    registry = registry_of(request)
    if registry.console is None:
        return see(urls.HOME())
    csrf = request.cookies.get(LOGIN_COOKIE)
    if request.method == "GET" or not csrf:
        csrf = secrets.token_urlsafe(32)
        answer = login_page(
            request,
            csrf=csrf,
            next=safe_next(request.query_params.get("next")),
            changed=request.query_params.get("changed") == "1",
        )
        set_cookie(answer, request, LOGIN_COOKIE, csrf, 3600)
        return answer
    request.state.form = await _form(request)
    target = safe_next(field(request, "next"))
    if not same(field(request, "csrf"), csrf):
        return login_page(
            request, 403, csrf=csrf, next=target, error="The form is out of date; try again."
        )
    try:
        secret = await registry.console.open(
            field(request, "username"), field(request, "password"), client_address(request)
        )
    except (Unauthorized, TooManyRequests) as exc:
        return login_page(request, exc.status, csrf=csrf, next=target, error=exc.text)
    done = see(target)
    done.delete_cookie(LOGIN_COOKIE, path=urls.HOME())
    hours = registry.settings.auth.console_session_hours
    set_cookie(done, request, COOKIE, secret, int(hours * 3600))
    return done


def login_page(request: Request, status: int = 200, **context: Any) -> HTMLResponse:
    """The login form, with the single sign-on button when a provider is set up."""
    auth = registry_of(request).auth
    provider = auth.provider if auth is not None else None
    return page(
        "login.html",
        status,
        session=None,
        sso=provider.settings.display_name if provider is not None else None,
        admins_only=auth is not None and auth.settings.local_login == "admins",
        **{"error": None, "changed": False, "csrf": "", "next": urls.DASHBOARD(), **context},
    )


@console
async def logout(request: Request, session: Session) -> Response:
    registry = registry_of(request)
    if registry.console is not None:
        await registry.console.close(request.cookies.get(COOKIE))
    answer = see(urls.LOGIN())
    answer.delete_cookie(COOKIE, path=urls.HOME())
    return answer


@console
async def repositories(request: Request, session: Session) -> Response:
    registry = registry_of(request)
    readable = None
    if registry.auth is not None:
        readable = await registry.auth.accounts.readable_namespaces(session.identity)
    q = request.query_params.get("q", "")[:255]
    sort = request.query_params.get("sort", "name")
    sort = sort if sort in ("pushed", "pulls") else "name"
    last = request.query_params.get("last") or None
    found = await fetch(
        lambda n: registry.browse.repositories(readable, q or None, last, n, sort), _PAGE
    )
    next_url = None
    if found.more:
        after = {"q": q, "sort": sort, "last": found.items[-1].name}
        next_url = f"{urls.HOME()}?{urlencode(after)}"
    return page(
        "repositories.html",
        session=session,
        repositories=found.items,
        q=q,
        sort=sort,
        next_url=next_url,
    )


@console
async def tags(request: Request, session: Session) -> Response:
    """A repository's tags, and the manifests no tag points at (what deleting tags
    left), each paged on its own."""
    name = await _repository(request, session, PULL)
    browse = registry_of(request).browse
    sort = "pushed" if request.query_params.get("sort") == "pushed" else "name"
    last = request.query_params.get("last") or None
    views = await fetch(
        lambda n: browse.tags(name, by_push=sort == "pushed", last=last, limit=n), _PAGE
    )
    untagged_last = request.query_params.get("untagged_last") or None
    untagged = await fetch(lambda n: browse.untagged(name, untagged_last, n), _PAGE)
    next_url = untagged_next = None
    if views.more:
        next_url = "?" + urlencode({"sort": sort, "last": views.items[-1].name})
    if untagged.more:
        untagged_next = "?" + urlencode({"untagged_last": untagged.items[-1].digest})
    return page(
        "tags.html",
        session=session,
        name=name,
        tags=views.items,
        untagged=untagged.items,
        sort=sort,
        host=request.url.netloc,
        next_url=next_url,
        untagged_next=untagged_next,
        untagged_hours=registry_of(request).settings.gc.untagged_hours,
        signed=await registry_of(request).trust.signed_in(name, [t.digest for t in views.items]),
    )


@console
async def manifest(request: Request, session: Session) -> Response:
    name = await _repository(request, session, PULL)
    found = await registry_of(request).browse.manifest(name, request.path_params["reference"])
    document = json.dumps(found.document, indent=2)
    return page("manifest.html", session=session, name=name, m=found, document=document)


@console
async def delete_tag(request: Request, session: Session) -> Response:
    """Delete a tag; and its image too, when no other tag points to it and the user
    leaves that ticked (as Harbor's artifact delete does)."""
    name = await _repository(request, session, DELETE)
    tag = request.path_params["tag"]
    back = urls.TAGS(name=name)
    registry = registry_of(request)
    if request.method == "GET":
        digest, others = await registry.browse.tag_sharing(name, tag)
        stays = f"under the tags {', '.join(others)}" if others else "untagged"
        return confirm(
            session,
            what=f"{name}:{tag}",
            back=back,
            action=urls.DELETE_TAG(name=name, tag=tag),
            consequence=f"The tag goes. Its image {digest} stays {stays} until deleted.",
            image=None if others else digest,
        )
    image = field(request, "image")
    await registry.manifests.delete(name, tag)
    if image:
        # Only while it is untagged: a tag pushed since the page was shown keeps it.
        await registry.manifests.delete(name, image, untagged=True)
    return see(back)


@console
async def delete_manifest(request: Request, session: Session) -> Response:
    """Delete an untagged manifest, as the repository page lists them."""
    name = await _repository(request, session, DELETE)
    digest = str(Digest.parse(request.path_params["reference"]))
    back = urls.TAGS(name=name)
    if request.method == "GET":
        return confirm(
            session,
            what=f"{name}@{digest}",
            back=back,
            action=urls.DELETE_MANIFEST(name=name, reference=digest),
            consequence="The untagged manifest goes; garbage collection then frees the "
            "blobs nothing else uses. Its referrers (signatures, SBOMs) stay, listed as "
            "untagged, until deleted too.",
        )
    await registry_of(request).manifests.delete(name, digest, untagged=True)
    return see(back)


@console
async def delete_repository(request: Request, session: Session) -> Response:
    name = await _repository(request, session, DELETE)
    if request.method == "GET":
        return confirm(
            session,
            what=f"the repository {name}",
            back=urls.TAGS(name=name),
            action=urls.DELETE_REPOSITORY(name=name),
            consequence="Every tag and manifest of it goes; garbage collection then "
            "frees the blobs no other repository uses.",
        )
    await registry_of(request).manifests.delete_repository(name)
    return see(urls.HOME())


async def home(request: Request) -> Response:
    return RedirectResponse(urls.HOME(), status_code=307)


@console
async def not_found(request: Request, session: Session) -> Response:
    """Any other path under /ui/."""
    return page(
        "error.html",
        404,
        session=session,
        title="Not found",
        message=f"The console has no page at {request.url.path}.",
    )
