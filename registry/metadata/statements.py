"""Statements as objects, and the one way they run: sent through the driver's own
connection (aiosqlite or asyncpg), one call into it each, or a whole transaction in one
call on SQLite's thread. The hot paths use them (manifest GET/HEAD, blob HEAD, tag pages,
the writes of an upload and of a manifest push): measured under load, SQLAlchemy's
per-statement work (greenlet switches, statement building, result processing, a second
thread hop to fetch) cost more than SQLite took to answer, a one-row write transaction
1.5 ms through it and 0.5 ms here. Everything else is SQLAlchemy Core, in the modules of
each resource beside these statements; both read and write the same tables, and the
tests run both on SQLite and PostgreSQL (tests/api/test_statements_on_the_wire.py holds
what each hot path sends).

A statement is declared once, at import, in its resource's module (`manifests.BY_TAG`,
`uploads.CLAIM`), and compiled there for both databases; a service calls it with its
parameters by name (`uploads.CLAIM(id=..., writer=...)`), which are checked against
those its text names. `:now` is the transaction's moment, given by the runner."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import time
from collections.abc import Callable, Generator, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from registry.metadata.database import Database
from registry.metadata.models import now as now_utc
from registry.metrics import query_duration, timed

T = TypeVar("T")
Row = Sequence[Any]  # a tuple from sqlite3, a Record from asyncpg
_PARAM = re.compile(r":(\w+)")
# SQLAlchemy keeps SQLite's timestamps as text in this form; they are compared as text.
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"


class Statement:
    """One SQL statement: a name (its label in the metrics), its text on SQLite and, where
    it differs, on PostgreSQL, in `:name` parameters, compiled to each driver's positional
    form once. A point lookup (a read of one row by key) is answered on SQLite on the
    event loop's own thread (Database.read_now)."""

    __slots__ = ("_forms", "name", "parameters", "point")

    def __init__(self, name: str, sql: str, postgres: str | None = None, *, point: bool = False):
        self.name = name
        self.point = point
        self._forms = (_positional(sql, postgres=False), _positional(postgres or sql, True))
        names = {*self._forms[0][1], *self._forms[1][1]}
        self.parameters = frozenset(names - {"now"})  # what a caller gives

    def __call__(self, **params: Any) -> Step:
        """This statement with its parameters, each one the text names, and only those."""
        if params.keys() != self.parameters:
            raise TypeError(
                f"statement {self.name} takes {sorted(self.parameters)}, given {sorted(params)}"
            )
        return self, params

    def __repr__(self) -> str:
        return f"Statement({self.name!r})"

    def compiled(self, postgres: bool, params: dict[str, Any]) -> tuple[str, list[Any]]:
        text, order = self._forms[postgres]
        return text, [_bind(params[key], postgres) for key in order]


Step = tuple[Statement, dict[str, Any]]
# A program: a generator that yields steps, is sent the rows each returns, and returns
# its result; run in one transaction by `program`.
Program = Generator[Step, list[Row], T]


def _positional(text: str, postgres: bool) -> tuple[str, list[str]]:
    """The statement with numbered (asyncpg) or `?` (sqlite3) parameters, and their names
    in order."""
    order: list[str] = []

    def number(match: re.Match[str]) -> str:
        order.append(match.group(1))
        return f"${len(order)}" if postgres else "?"

    return _PARAM.sub(number, text), order


def _bind(value: Any, postgres: bool) -> Any:
    """On SQLite, a timestamp in the form SQLAlchemy stores it, and a list as JSON text."""
    if not postgres:
        if isinstance(value, datetime):
            return value.strftime(_SQLITE_TIME)
        if isinstance(value, list):
            return json.dumps(value)
    return value


def _compiled(db: Database, step: Step, moment: datetime) -> tuple[str, list[Any]]:
    statement, params = step
    return statement.compiled(not db.is_sqlite, {"now": moment, **params})


async def rows(db: Database, step: Step) -> list[Row]:
    """A read's rows; a point lookup on SQLite without a hand-off to aiosqlite's thread
    when it can."""
    statement, params = step
    text, values = statement.compiled(not db.is_sqlite, params)  # a read: no `:now`
    if statement.point:
        start = time.perf_counter()
        found = db.read_now(text, values)
        if found is not None:
            query_duration(statement.name).observe(time.perf_counter() - start)
            return found
    async with db.driver() as driver:
        start = time.perf_counter()
        if db.is_sqlite:
            found = list(await driver.execute_fetchall(text, values))
        else:
            found = list(await driver.fetch(text, *values))
        query_duration(statement.name).observe(time.perf_counter() - start)
        return found


async def write(db: Database, *steps: Step) -> int:
    """Write statements, in order, in one transaction; the rows the last one changed."""
    return (await _write(db, steps))[0]


async def write_returning(db: Database, *steps: Step) -> list[Row]:
    """As `write`; the rows the last statement returned (RETURNING, or a function's call)."""
    return (await _write(db, steps))[1]


async def _write(db: Database, steps: tuple[Step, ...]) -> tuple[int, list[Row]]:
    moment = now_utc()
    statements = [_compiled(db, step, moment) for step in steps]
    label = "+".join(statement.name for statement, _ in steps)
    if not db.is_sqlite:
        with timed(query_duration(label)):
            return await db.retrying(lambda: _postgres_write(db, statements))
    async with db.writer_turn(), db.driver() as driver:
        with timed(query_duration(label)):
            # The whole transaction in one call on the connection's thread: a call is a
            # hand-off there and back (80 us of CPU on this project's machines, each),
            # and the writer's turn is held for all of them. aiosqlite has no public way
            # to run a function there; _execute is how its own methods do
            # (tests/unit/test_library_internals.py).
            done: tuple[int, list[Row]] = await driver._execute(
                _sqlite_transaction, driver._conn, statements, db.let_writers_go
            )
            return done


async def program(db: Database, make: Callable[[], Program[T]], label: str) -> T:
    """The statements `make()` yields, in one write transaction; its result. On
    PostgreSQL a program aborted to break a deadlock is made and run again."""
    if db.is_sqlite:
        moment = now_utc()
        async with db.writer_turn(), db.driver() as driver:
            with timed(query_duration(label)):
                result: T = await driver._execute(
                    _sqlite_program,
                    driver._conn,
                    make(),
                    lambda step: _compiled(db, step, moment),
                    db.let_writers_go,
                )
                return result

    async def once() -> T:
        steps, moment = make(), now_utc()
        async with db.driver() as driver, driver.transaction():
            try:
                step = next(steps)
                while True:
                    text, values = _compiled(db, step, moment)
                    step = steps.send(list(await driver.fetch(text, *values)))
            except StopIteration as done:
                result: T = done.value
                return result

    with timed(query_duration(label)):
        return await db.retrying(once)


async def _postgres_write(
    db: Database, statements: list[tuple[str, list[Any]]]
) -> tuple[int, list[Row]]:
    *before, (last, last_values) = statements
    # One statement is a transaction of its own: BEGIN and COMMIT would be two more
    # round trips.
    async with db.driver() as driver, driver.transaction() if before else contextlib.nullcontext():
        for text, values in before:
            await driver.execute(text, *values)
        if " RETURNING " in last or last.startswith("SELECT "):  # a function's call
            returned = list(await driver.fetch(last, *last_values))
            return len(returned), returned
        status = await driver.execute(last, *last_values)
    # asyncpg answers with the command tag: "INSERT 0 1", "UPDATE 3".
    return int(status.rsplit(" ", 1)[-1]), []


def _sqlite_transaction(
    conn: sqlite3.Connection, statements: list[tuple[str, list[Any]]], done: Callable[[], None]
) -> tuple[int, list[Row]]:
    """BEGIN IMMEDIATE, the statements, COMMIT (autocommit connection: database.py), on the
    connection's own thread, then `done`; the rows the last statement changed, and those
    it returned."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for text, values in statements:
            cursor = conn.execute(text, values)
        returned = cursor.fetchall()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # a failed COMMIT (disk full) leaves it open too
            conn.execute("ROLLBACK")
        raise
    finally:
        done()
    return int(cursor.rowcount), returned


def _sqlite_program(
    conn: sqlite3.Connection,
    steps: Program[T],
    compiled: Callable[[Step], tuple[str, list[Any]]],
    done: Callable[[], None],
) -> T:
    """The whole program in one transaction on the connection's own thread, as
    _sqlite_transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        try:
            step = next(steps)
            while True:
                step = steps.send(conn.execute(*compiled(step)).fetchall())
        except StopIteration as ended:
            result: T = ended.value
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        done()
    return result


# SQLAlchemy Core in the connection's dialect, for the statements of the other paths.


def dialect_insert(conn: AsyncConnection, model: Any) -> Any:
    table: Table = model.__table__
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def lexical(conn: AsyncConnection, column: Any) -> ColumnElement[Any]:
    # The spec orders tags and names lexically (byte order); PostgreSQL's default
    # collation would order by locale rules instead.
    ordered: ColumnElement[Any] = (
        column.collate("C") if conn.dialect.name == "postgresql" else column
    )
    return ordered


async def insert_new(conn: AsyncConnection, table: Any, **values: object) -> int | None:
    """The new row's id, or None when a unique key already holds such a row (nothing is
    written then)."""
    statement = dialect_insert(conn, table).values(**values).on_conflict_do_nothing()
    result = await conn.execute(statement.returning(table.id))
    return result.scalar()
