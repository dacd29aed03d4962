"""The console's route table: each path of web/urls.py and what serves it."""

from __future__ import annotations

from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from registry.web import (
    account,
    audit,
    dashboard,
    manage,
    pages,
    settings,
    sso,
    urls,
    webhooks,
)

_READ, _FORM, _POST = ["GET"], ["GET", "POST"], ["POST"]

ROUTES = [
    Route(urls.ROOT.template, pages.home, methods=_READ),
    Route(urls.CONSOLE.template, pages.home, methods=_READ),
    Route(urls.HOME.template, pages.repositories, methods=_READ),
    Route(urls.DASHBOARD.template, dashboard.dashboard, methods=_READ),
    Route(urls.LOGIN.template, pages.login, methods=_FORM),
    Route(urls.LOGOUT.template, pages.logout, methods=_POST),
    Route(urls.OIDC_LOGIN.template, sso.oidc_login, methods=_READ),
    Route(urls.OIDC_CALLBACK.template, sso.oidc_callback, methods=_READ),
    Route(urls.DELETE_TAG.template, pages.delete_tag, methods=_FORM),
    Route(urls.TAGS.template, pages.tags, methods=_READ),
    Route(urls.DELETE_REPOSITORY.template, pages.delete_repository, methods=_FORM),
    Route(urls.DELETE_MANIFEST.template, pages.delete_manifest, methods=_FORM),
    Route(urls.MANIFEST.template, pages.manifest, methods=_READ),
    Route(urls.NAMESPACES.template, manage.namespaces, methods=_FORM),
    Route(urls.NAMESPACE.template, manage.namespace, methods=_READ),
    Route(urls.MEMBERS.template, manage.set_member, methods=_POST),
    Route(urls.REMOVE_MEMBER.template, manage.remove_member, methods=_POST),
    Route(urls.SETTINGS.template, settings.settings, methods=_READ),
    Route(urls.SETTINGS_PART.template, settings.change, methods=_POST),
    Route(urls.NAMESPACE_GROUP_ROLES.template, manage.add_group_role, methods=_POST),
    Route(urls.REMOVE_NAMESPACE_GROUP_ROLE.template, manage.remove_group_role, methods=_POST),
    Route(urls.GROUP_ROLES.template, manage.add_group_role, methods=_POST),
    Route(urls.REMOVE_GROUP_ROLE.template, manage.remove_group_role, methods=_POST),
    Route(urls.ROBOTS.template, manage.add_robot, methods=_POST),
    Route(urls.REMOVE_ROBOT.template, manage.remove_robot, methods=_POST),
    Route(urls.WEBHOOKS.template, webhooks.webhooks, methods=_FORM),
    Route(urls.WEBHOOK.template, webhooks.webhook, methods=_READ),
    Route(urls.CHANGE_WEBHOOK.template, webhooks.change, methods=_POST),
    Route(urls.TEST_WEBHOOK.template, webhooks.test, methods=_POST),
    Route(urls.REDELIVER.template, webhooks.redeliver, methods=_POST),
    Route(urls.REMOVE_WEBHOOK.template, webhooks.remove, methods=_FORM),
    Route(urls.AUDIT.template, audit.audit, methods=_READ),
    Route(urls.AUDIT_EXPORT.template, audit.export, methods=_READ),
    Route(urls.ACCOUNT.template, account.account, methods=_FORM),
    Route(urls.TOKENS.template, account.add_token, methods=_POST),
    Route(urls.REVOKE_TOKEN.template, account.revoke_token, methods=_POST),
    Route(urls.USERS.template, manage.users, methods=_FORM),
    Route(urls.CHANGE_USER.template, manage.change_user, methods=_POST),
    Route(urls.SYSTEM_ROBOTS.template, manage.add_system_robot, methods=_POST),
    Route(urls.REMOVE_SYSTEM_ROBOT.template, manage.remove_system_robot, methods=_POST),
    Route(urls.STATUS.template, manage.status, methods=_READ),
    Route(urls.HOLD.template, manage.hold, methods=_POST),
    Route(urls.COLLECT.template, manage.collect, methods=_POST),
    Route(urls.CHECK.template, manage.check, methods=_POST),
    Mount(urls.STATIC.template, StaticFiles(directory=pages.HERE / "static"), name="static"),
    Route(urls.OTHER.template, pages.not_found, methods=_READ),
]
