"""`registry user|namespace|member|robot …`: manage accounts straight in the database.

These run on the server's host (or in its container) with the server's settings; they
need no login, as whoever can run them can read the database anyway.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from registry.auth.accounts import (
    ROLES,
    AccountError,
    Accounts,
    check_password,
    check_user_name,
    split_permissions,
)
from registry.cli.common import run_on_database
from registry.config import Settings

Command = Callable[[Accounts, argparse.Namespace], Awaitable[None]]


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Register the account commands on the top-level subparsers."""
    user = _group(commands, "user", "users and their passwords", common)
    add = _command(user, "add", _user_add, "create a user (and their personal namespace)")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="may do anything anywhere")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    passwd = _command(user, "passwd", _user_passwd, "set a user's password")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true")
    _command(user, "rm", _user_rm, "remove a user").add_argument("name")
    _command(user, "list", _user_list, "list users")
    change = _command(user, "set", _user_set, "grant or take admin rights; disable or enable")
    change.add_argument("name")
    change.add_argument("--admin", action=argparse.BooleanOptionalAction, default=None)
    change.add_argument("--disabled", action=argparse.BooleanOptionalAction, default=None)

    namespace = _group(commands, "namespace", "namespaces: public or private", common)
    add = _command(namespace, "add", _namespace_add, "create a namespace")
    add.add_argument("name")
    add.add_argument("--public", action="store_true", help="anyone may pull, even anonymous")
    add.add_argument("--owner", help="a user to make its owner")
    change = _command(namespace, "set", _namespace_set, "make a namespace public or private")
    change.add_argument("name")
    change.add_argument("--public", action=argparse.BooleanOptionalAction, required=True)
    _command(namespace, "rm", _namespace_rm, "remove a namespace").add_argument("name")
    _command(namespace, "list", _namespace_list, "list namespaces")

    member = _group(commands, "member", "who holds which role in a namespace", common)
    change = _command(member, "set", _member_set, "give a user a role in a namespace")
    change.add_argument("namespace")
    change.add_argument("user")
    change.add_argument("role", choices=list(ROLES))
    remove = _command(member, "rm", _member_rm, "take a user out of a namespace")
    remove.add_argument("namespace")
    remove.add_argument("user")
    _command(member, "list", _member_list, "list a namespace's members").add_argument("namespace")

    robot = _group(commands, "robot", "robot accounts for CI", common)
    add = _command(robot, "add", _robot_add, "create robot$NAME; prints its secret once")
    add.add_argument("name", help="e.g. team+ci, which logs in as robot$team+ci")
    add.add_argument(
        "--grant",
        action="append",
        required=True,
        metavar="NAMESPACE=ACTIONS",
        help="e.g. team=pull,push; a pattern covers namespaces made later too: "
        "'team-*=pull'; repeat for more namespaces",
    )
    add.add_argument("--expires-days", type=int, help="expire after this many days")
    _command(robot, "rm", _robot_rm, "remove a robot").add_argument("name")
    _command(robot, "list", _robot_list, "list robots").add_argument("--namespace")


def run(settings: Settings, args: argparse.Namespace) -> int:
    return run_on_database(settings, lambda db: args.handler(Accounts(db), args), (AccountError,))


def _group(commands: Any, name: str, help_text: str, common: argparse.ArgumentParser) -> Any:
    parser = commands.add_parser(name, help=help_text)
    parser.set_defaults(run=run, audited=True)
    return (parser.add_subparsers(dest="action", required=True), common)


def _command(group: Any, name: str, handler: Command, help_text: str) -> argparse.ArgumentParser:
    subparsers, common = group
    parser: argparse.ArgumentParser = subparsers.add_parser(name, help=help_text, parents=[common])
    parser.set_defaults(handler=handler)
    return parser


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise AccountError("the passwords do not match")
    return check_password(password)


async def _user_add(accounts: Accounts, args: argparse.Namespace) -> None:
    check_user_name(args.name)
    await accounts.add_user(args.name, _read_password(args), admin=args.admin)
    print(f"created user {args.name} with personal namespace {args.name}")


async def _user_passwd(accounts: Accounts, args: argparse.Namespace) -> None:
    await accounts.set_password(args.name, _read_password(args))
    print(f"password of {args.name} changed; their refresh tokens no longer work")


async def _user_rm(accounts: Accounts, args: argparse.Namespace) -> None:
    await accounts.remove_user(args.name)
    print(f"removed user {args.name}")


async def _user_list(accounts: Accounts, args: argparse.Namespace) -> None:
    for user in await accounts.list_users():
        flags = [flag for flag, on in (("admin", user.is_admin), ("disabled", user.disabled)) if on]
        print(f"{user.name}\t{','.join(flags)}".rstrip())


async def _user_set(accounts: Accounts, args: argparse.Namespace) -> None:
    await accounts.set_user(args.name, admin=args.admin, disabled=args.disabled)
    print(f"updated user {args.name}")


async def _namespace_add(accounts: Accounts, args: argparse.Namespace) -> None:
    await accounts.add_namespace(args.name, public=args.public, owner=args.owner)
    print(f"created {'public' if args.public else 'private'} namespace {args.name}")


async def _namespace_set(accounts: Accounts, args: argparse.Namespace) -> None:
    await accounts.set_public(args.name, args.public)
    print(f"namespace {args.name} is now {'public' if args.public else 'private'}")


async def _namespace_rm(accounts: Accounts, args: argparse.Namespace) -> None:
    await accounts.remove_namespace(args.name)
    print(f"removed namespace {args.name}; its repositories remain, reachable by admins")


async def _namespace_list(accounts: Accounts, args: argparse.Namespace) -> None:
    for name, public, members in await accounts.list_namespaces():
        print(f"{name}\t{'public' if public else 'private'}\t{members} members")


async def _member_set(accounts: Accounts, args: argparse.Namespace) -> None:
    await accounts.set_member(args.namespace, args.user, args.role)
    print(f"{args.user} is {args.role} in {args.namespace}")


async def _member_rm(accounts: Accounts, args: argparse.Namespace) -> None:
    await accounts.remove_member(args.namespace, args.user)
    print(f"{args.user} is no longer a member of {args.namespace}")


async def _member_list(accounts: Accounts, args: argparse.Namespace) -> None:
    for user, role in await accounts.list_members(args.namespace):
        print(f"{user}\t{role}")


async def _robot_add(accounts: Accounts, args: argparse.Namespace) -> None:
    entries = []
    for grant in args.grant:
        namespace, sep, actions = grant.partition("=")
        if not sep:
            raise AccountError(f"--grant takes NAMESPACE=ACTIONS, got {grant!r}")
        entries.append((namespace, actions.split(",")))
    grants, patterns = split_permissions(entries)
    expires = None
    if args.expires_days is not None:
        expires = datetime.now(UTC) + timedelta(days=args.expires_days)
    secret = await accounts.add_robot(args.name, grants, expires, patterns)
    print("created robot$" + args.name, file=sys.stderr)
    print(
        "its secret, shown only this once (docker login -u 'robot$NAME' --password-stdin):",
        file=sys.stderr,
    )
    print(secret)


async def _robot_rm(accounts: Accounts, args: argparse.Namespace) -> None:
    await accounts.remove_robot(args.name)
    print(f"removed robot {args.name}")


async def _robot_list(accounts: Accounts, args: argparse.Namespace) -> None:
    for robot in await accounts.list_robots(args.namespace):
        grants = " ".join(f"{ns}={','.join(a)}" for ns, a in sorted(robot.grants.items()))
        expires = robot.expires_at.isoformat() if robot.expires_at else "never"
        state = "disabled" if robot.disabled else f"expires {expires}"
        print(f"{robot.name}\t{grants}\t{state}")
