"""The console's home for admins and owners: the dashboard (services/dashboard.py),
its charts drawn here as SVG bars, in the page itself: no script, and nothing the strict
CSP would refuse (shapes and attributes only; their colours are console.css's)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from registry import readable
from registry.auth.sessions import Session
from registry.requests import registry_of
from registry.services.dashboard import Series
from registry.web import urls
from registry.web.manage import accounts_of
from registry.web.pages import console, page, see

HEIGHT = 100  # the charts' own units; the page scales them
BAR = 10


@dataclass(frozen=True, slots=True)
class Bar:
    x: int
    y: float
    height: float
    label: str  # the day and its value, in words


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    summary: str  # what a screen reader says of it
    width: int
    bars: list[Bar]
    rows: list[tuple[str, str]]  # (day, value) for the table beside it


def chart(title: str, series: Series, *, size: bool = False) -> Chart:
    def say(value: int) -> str:
        return readable.size(value) if size else f"{value:,}"

    peak = series.peak or 1
    bars = []
    for i, (day, value) in enumerate(zip(series.days, series.values, strict=True)):
        height = value / peak * HEIGHT
        bars.append(Bar(i * BAR, HEIGHT - height, height, f"{day:%b %d}: {say(value)}"))
    first, last = series.days[0], series.days[-1]
    span = f"{title}, {first:%b %d} to {last:%b %d}"
    if size:
        summary = f"{span}: from {say(series.values[0])} to {say(series.values[-1])}"
    else:
        summary = f"{span}: {say(series.total)} in all, at most {say(series.peak)} a day"
    rows = [(f"{d:%Y-%m-%d}", say(v)) for d, v in zip(series.days, series.values, strict=True)]
    return Chart(title, summary, len(bars) * BAR, bars, rows)


@console
async def dashboard(request: Request, session: Session) -> Response:
    owned = None
    if registry_of(request).auth is not None:
        owned = await accounts_of(request).owned_namespaces(session.identity)
        if owned is not None and not owned:
            return see(urls.HOME())  # neither admin nor owner: the repositories
    found = await registry_of(request).dashboard.overview(owned)
    return page(
        "dashboard.html",
        session=session,
        charts=[
            chart("Pushes per day", found.pushes),
            chart("Pulls per day", found.pulls),
            chart("Stored", found.stored, size=True),
        ],
        overview=found,
        scope=sorted(owned) if owned is not None else None,
    )
