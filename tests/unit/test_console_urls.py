"""The console's paths are built in one place (web/urls.py): each one built reaches the
route declared for it, ahead of every other, and its values come back as given."""

from __future__ import annotations

from starlette.routing import Match, Route

from registry.web import urls
from registry.web.routes import ROUTES

SAMPLES = {
    "name": "team/tools/app",
    "tag": "v1.2_rc-3",
    "reference": "sha256:" + "ab" * 32,
    "namespace": "team",
    "user": "ann.lee",
    "robot": "ci",
    "action": "disable",
    "part": "retention",
    "ident": "7",
    "token": "ci-build",
    "path": "no/such/page",
    "remote": "dr-site",
    "rule": "to-dr",
    "run": "12",
    "key": "release-2026",
}


def test_every_console_path_built_is_served_by_its_own_route() -> None:
    paths = [p for p in vars(urls).values() if isinstance(p, urls.Path)]
    assert len(paths) >= 20
    for path in paths:
        if path is urls.STATIC:  # a mount: its files are below it
            continue
        named = path.template.replace(":", "}")  # {name:path} as {name}
        params = {k: SAMPLES[k] for k in SAMPLES if "{" + k + "}" in named}
        built = path(**params)
        assert "{" not in built, built
        scope = {"type": "http", "path": built, "method": "POST", "path_params": {}}
        for route in ROUTES:
            matched, child = route.matches(scope)
            if matched is not Match.NONE:
                assert isinstance(route, Route) and route.path == path.template, (built, route)
                assert child["path_params"] == params
                break
        else:
            raise AssertionError(f"no route serves {built}")


def test_a_value_is_one_path_segment_and_a_digest_stays_readable() -> None:
    digest = SAMPLES["reference"]
    assert (
        urls.MANIFEST(name="team/app", reference=digest) == f"/ui/r/team/app/-/manifests/{digest}"
    )
    assert urls.DELETE_TAG(name="a/b", tag="x/y") == "/ui/r/a/b/-/tags/x%2Fy/delete"
