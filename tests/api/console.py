"""Driving the console in process: its forms' CSRF token, and logging in."""

from __future__ import annotations

import re

import httpx

from tests.api.conftest import EVIL, PASSWORD

__all__ = ["EVIL", "csrf_of", "log_in"]


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found[1]


async def log_in(web: httpx.AsyncClient, user: str, next_: str = "/ui/") -> httpx.Response:
    form = await web.get("/ui/login", params={"next": next_})
    return await web.post(
        "/ui/login",
        data={"username": user, "password": PASSWORD, "csrf": csrf_of(form.text), "next": next_},
    )
