"""The console's route table."""

from __future__ import annotations

from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from registry.web import manage, pages

_NAMESPACE = "/ui/namespaces/{namespace}"

ROUTES = [
    Route("/", pages.home, methods=["GET"]),
    Route("/ui", pages.home, methods=["GET"]),
    Route("/ui/", pages.repositories, methods=["GET"]),
    Route("/ui/login", pages.login, methods=["GET", "POST"]),
    Route("/ui/logout", pages.logout, methods=["POST"]),
    Route("/ui/r/{name:path}/-/tags/{tag}/delete", pages.delete_tag, methods=["GET", "POST"]),
    Route("/ui/r/{name:path}/-/tags", pages.tags, methods=["GET"]),
    Route("/ui/r/{name:path}/-/delete", pages.delete_repository, methods=["GET", "POST"]),
    Route(
        "/ui/r/{name:path}/-/manifests/{reference}/delete",
        pages.delete_manifest,
        methods=["GET", "POST"],
    ),
    Route("/ui/r/{name:path}/-/manifests/{reference}", pages.manifest, methods=["GET"]),
    Route("/ui/namespaces", manage.namespaces, methods=["GET", "POST"]),
    Route(_NAMESPACE, manage.namespace, methods=["GET"]),
    Route(_NAMESPACE + "/members", manage.set_member, methods=["POST"]),
    Route(_NAMESPACE + "/members/{user}/remove", manage.remove_member, methods=["POST"]),
    Route(_NAMESPACE + "/robots", manage.add_robot, methods=["POST"]),
    Route(_NAMESPACE + "/robots/{robot}/remove", manage.remove_robot, methods=["POST"]),
    Route("/ui/users", manage.users, methods=["GET", "POST"]),
    Route("/ui/users/{user}/{action:str}", manage.change_user, methods=["POST"]),
    Route("/ui/status", manage.status, methods=["GET"]),
    Mount("/ui/static", StaticFiles(directory=pages.HERE / "static"), name="static"),
    Route("/ui/{path:path}", pages.not_found, methods=["GET"]),
]
