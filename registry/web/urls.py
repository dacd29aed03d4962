"""The console's paths, each named once: web/routes.py serves them, and pages and
templates build them from here (`urls.TAGS(name=name)`, `{{ urls.TAGS(name=repo.name) }}`).
A value is quoted as a path segment; a repository name keeps its slashes."""

from __future__ import annotations

from urllib.parse import quote

from starlette.convertors import PathConvertor
from starlette.routing import compile_path


class Path:
    __slots__ = ("_format", "_whole", "template")

    def __init__(self, template: str) -> None:
        self.template = template  # as Starlette's routes take it
        _, self._format, convertors = compile_path(template)
        self._whole = {k for k, c in convertors.items() if isinstance(c, PathConvertor)}

    def __call__(self, **params: str) -> str:
        return self._format.format(
            **{k: quote(v, safe=":@/" if k in self._whole else ":@") for k, v in params.items()}
        )


ROOT = Path("/")
CONSOLE = Path("/ui")
HOME = Path("/ui/")  # the repositories
DASHBOARD = Path("/ui/dashboard")
LOGIN = Path("/ui/login")
LOGOUT = Path("/ui/logout")
OIDC_LOGIN = Path("/ui/oidc/login")
OIDC_CALLBACK = Path("/ui/oidc/callback")
TAGS = Path("/ui/r/{name:path}/-/tags")
DELETE_TAG = Path("/ui/r/{name:path}/-/tags/{tag}/delete")
DELETE_REPOSITORY = Path("/ui/r/{name:path}/-/delete")
MANIFEST = Path("/ui/r/{name:path}/-/manifests/{reference}")
DELETE_MANIFEST = Path("/ui/r/{name:path}/-/manifests/{reference}/delete")
NAMESPACES = Path("/ui/namespaces")
NAMESPACE = Path("/ui/namespaces/{namespace}")
MEMBERS = Path("/ui/namespaces/{namespace}/members")
REMOVE_MEMBER = Path("/ui/namespaces/{namespace}/members/{user}/remove")
SETTINGS = Path("/ui/namespaces/{namespace}/settings")
SETTINGS_PART = Path("/ui/namespaces/{namespace}/settings/{part}")
NAMESPACE_GROUP_ROLES = Path("/ui/namespaces/{namespace}/group-roles")
REMOVE_NAMESPACE_GROUP_ROLE = Path("/ui/namespaces/{namespace}/group-roles/{ident}/remove")
GROUP_ROLES = Path("/ui/group-roles")
REMOVE_GROUP_ROLE = Path("/ui/group-roles/{ident}/remove")
ROBOTS = Path("/ui/namespaces/{namespace}/robots")
REMOVE_ROBOT = Path("/ui/namespaces/{namespace}/robots/{robot}/remove")
WEBHOOKS = Path("/ui/webhooks")
WEBHOOK = Path("/ui/webhooks/{ident}")
CHANGE_WEBHOOK = Path("/ui/webhooks/{ident}/change")
TEST_WEBHOOK = Path("/ui/webhooks/{ident}/test")
REDELIVER = Path("/ui/webhooks/{ident}/redeliver")
REMOVE_WEBHOOK = Path("/ui/webhooks/{ident}/remove")
REPLICATION = Path("/ui/replication")
REMOTES = Path("/ui/replication/remotes")
TEST_REMOTE = Path("/ui/replication/remotes/{namespace}/{remote}/test")
REMOVE_REMOTE = Path("/ui/replication/remotes/{namespace}/{remote}/remove")
RULES = Path("/ui/replication/rules")
RUN_RULE = Path("/ui/replication/rules/{namespace}/{rule}/run")
REMOVE_RULE = Path("/ui/replication/rules/{namespace}/{rule}/remove")
RUN = Path("/ui/replication/runs/{run}")
RETRY_RUN = Path("/ui/replication/runs/{run}/retry")
TRUST = Path("/ui/trust")
TRUSTED_KEYS = Path("/ui/trust/keys")
REMOVE_KEY = Path("/ui/trust/keys/{namespace}/{key}/remove")
SIGNATURE_POLICY = Path("/ui/trust/policies/{namespace}")
AUDIT = Path("/ui/audit")
AUDIT_EXPORT = Path("/ui/audit/export")
ACCOUNT = Path("/ui/account")
TOKENS = Path("/ui/account/tokens")
REVOKE_TOKEN = Path("/ui/account/tokens/{token}/revoke")
USERS = Path("/ui/users")
SYSTEM_ROBOTS = Path("/ui/robots")
REMOVE_SYSTEM_ROBOT = Path("/ui/robots/{robot}/remove")
CHANGE_USER = Path("/ui/users/{user}/{action:str}")
STATUS = Path("/ui/status")
HOLD = Path("/ui/status/hold")
COLLECT = Path("/ui/status/collect")
CHECK = Path("/ui/status/check")
STATIC = Path("/ui/static")
OTHER = Path("/ui/{path:path}")
