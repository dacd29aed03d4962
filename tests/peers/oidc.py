"""A real OpenID provider for login tests: Canaille, run by pytest-iam's `iam_server`
fixture in a thread of the test process (discovery, JWKS, the authorization code flow
with PKCE through its real login and consent forms, refresh tokens, groups).

`browse` plays the browser on the provider's side with httpx: it follows redirects and
fills the login, password and consent forms until the provider redirects to the client,
then returns that URL, which the test hands to the registry.
"""

from __future__ import annotations

import urllib.parse
from html.parser import HTMLParser
from typing import Any

import httpx


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action") or "", "fields": {}, "buttons": []})
        elif tag in ("input", "button") and self.forms and a.get("name"):
            name, value = str(a["name"]), a.get("value") or ""
            if tag == "button" or a.get("type") == "submit":
                self.forms[-1]["buttons"].append((name, value))
            elif a.get("type") not in ("checkbox", "radio") or "checked" in a:
                self.forms[-1]["fields"][name] = value


def browse(start: str, user: str, password: str, redirect_uri: str, steps: int = 10) -> str:
    """From the authorization URL `start`, log in at the provider as `user`; the URL the
    provider sends the browser back to (on `redirect_uri`)."""
    with httpx.Client() as http:
        response = http.get(start)
        for _ in range(steps):
            if response.is_redirect:
                location = urllib.parse.urljoin(str(response.url), response.headers["location"])
                if location.startswith(redirect_uri):
                    return location
                response = http.get(location)
                continue
            assert response.status_code == 200, (response.status_code, response.text[:300])
            parser = _Forms()
            parser.feed(response.text)
            wanted = {"login", "password", "answer"}
            form = next(
                f
                for f in parser.forms
                if wanted & (set(f["fields"]) | {name for name, _ in f["buttons"]})
            )
            data = dict(form["fields"])
            if "login" in data:
                data["login"] = user
            if "password" in data:
                data["password"] = password
            if ("answer", "accept") in form["buttons"]:
                data["answer"] = "accept"
            action = urllib.parse.urljoin(str(response.url), form["action"] or str(response.url))
            response = http.post(action, data=data)
    raise AssertionError(f"the provider never sent {user!r} back to {redirect_uri}")


def add_user(iam: Any, name: str, password: str, groups: tuple[str, ...] = ()) -> Any:
    user = iam.random_user(user_name=name, formatted_name=name, emails=[f"{name}@example.org"])
    iam.backend.set_user_password(user, password)
    for group in groups:
        found = iam.backend.get(iam.models.Group, display_name=group)
        if found is None:
            iam.random_group(display_name=group, members=[user])
        else:
            iam.backend.update(found, members=[*found.members, user])
            iam.backend.save(found)
    return user


def leave(iam: Any, user: Any, group: str) -> None:
    found = iam.backend.get(iam.models.Group, display_name=group)
    iam.backend.update(found, members=[m for m in found.members if m.id != user.id])
    iam.backend.save(found)


def add_client(iam: Any, redirect_uri: str) -> tuple[str, str]:
    """A confidential client of the registry's, registered as an operator would (RFC 7591
    dynamic registration, open in pytest-iam): (id, secret)."""
    metadata = httpx.get(iam.url + ".well-known/openid-configuration").json()
    answer = httpx.post(
        metadata["registration_endpoint"],
        json={
            "client_name": "registry",
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic",
            "scope": "openid profile email groups",
        },
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["client_id"], answer.json()["client_secret"]
