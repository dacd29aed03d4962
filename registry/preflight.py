"""What a command checks before it starts: the data folder, the database, the port. Each
failure is one line that names the setting, what it points at and the cause, raised as
Unusable for the command line to print (registry/cli exits 2): an operator reads what to
change, not a traceback."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import stat
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from registry.config import Settings, env_name

log = logging.getLogger("registry")


class Unusable(Exception):
    """A setting points at something this command cannot use; the message says which."""


def data_dir(settings: Settings) -> None:
    """Create the data folder, readable by its owner only (it holds the SQLite index with
    the password hashes, the token key and the blobs); warn when an existing one is
    readable by others."""
    folder = Path(settings.data_dir).resolve()
    where = f"data_dir ({env_name('data_dir')}) {folder}"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise Unusable(f"{where}: cannot create it ({exc.strerror})") from exc
    if not folder.is_dir():
        raise Unusable(f"{where}: not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise Unusable(f"{where}: this user ({_user()}) may not write in it")
    mode = stat.S_IMODE(folder.stat().st_mode)
    if mode & 0o077:
        log.warning(
            "%s is open to other users of this host (mode %o): they may read the index, "
            "the token key and private blobs; run `chmod 700 %s`",
            where,
            mode,
            folder,
        )


def sqlite_folder(settings: Settings) -> None:
    """A SQLite file named by database.url must be in a folder that exists and that this
    user may write in (SQLite writes its journal beside the file)."""
    url = make_url(settings.database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return
    folder = Path(url.database).resolve().parent
    where = f"database.url ({env_name('database.url')}): the SQLite file {url.database}"
    if not folder.is_dir():
        raise Unusable(f"{where} is in {folder}, which does not exist: create the folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise Unusable(f"{where} is in {folder}, where this user ({_user()}) may not write")


def database(settings: Settings) -> None:
    """Connect once, within database.timeout_seconds, and say why that failed."""
    url = make_url(settings.database_url)
    if url.get_backend_name() != "postgresql":
        return
    where = (
        f"database.url ({env_name('database.url')}): cannot connect to PostgreSQL at "
        f"{url.host or 'localhost'}:{url.port or 5432} as {url.username or _user()}"
    )
    timeout = settings.database.timeout_seconds

    async def connect() -> None:
        # Through SQLAlchemy, as the server connects: the URL's options mean the same.
        engine = create_async_engine(settings.database_url, connect_args={"timeout": timeout})
        try:
            async with engine.connect():
                pass
        finally:
            await engine.dispose()

    try:
        asyncio.run(connect())
    except Exception as exc:
        raise Unusable(f"{where}: {cause(exc, url.database, timeout)}") from exc


def cause(exc: BaseException, name: str | None = None, timeout: float = 0) -> str:
    """What went wrong talking to the database, in words: the first error in the chain
    (SQLAlchemy's wrappers, the driver's own, the socket's) that says something."""
    import asyncpg

    chain: list[BaseException] = [exc]
    while len(chain) < 8 and (inner := getattr(chain[-1], "orig", None) or chain[-1].__cause__):
        chain.append(inner)
    for error in chain:
        if isinstance(error, asyncpg.InvalidPasswordError):
            return "the server refused the password (the URL's, or database.password)"
        if isinstance(error, asyncpg.InvalidCatalogNameError):
            return f"{error}; create it (createdb {name})" if name else str(error)
        if isinstance(error, asyncpg.PostgresError):
            return f"the server refused: {error}"
        if isinstance(error, socket.gaierror):
            return f"the host name does not resolve ({error.strerror})"
        if isinstance(error, ConnectionRefusedError):
            return "nothing accepts connections there; is PostgreSQL running and listening there?"
        if isinstance(error, TimeoutError):
            return (
                f"no answer within {timeout:g} s (database.timeout_seconds)"
                if timeout
                else "no answer in time"
            )
        if isinstance(error, OSError) and error.strerror:
            return error.strerror
    # The driver's own (a refused TLS upgrade), or a statement's: its first line.
    last = chain[-1]
    return (str(last) or type(last).__name__).splitlines()[0][:300]


def port(settings: Settings) -> None:
    """Bind the port once, as the server will, before anything says it listens."""
    host, number = settings.http.host, settings.http.port
    try:
        family = socket.getaddrinfo(host, number, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise Unusable(
            f"http.host ({env_name('http.host')}) {host}: not an address ({exc.strerror})"
        ) from exc
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, number))
        except OSError as exc:
            setting, cause = "http.port", exc.strerror or str(exc)
            if exc.errno == errno.EADDRINUSE:
                cause = "another program listens there; stop it, or choose another port"
            elif exc.errno == errno.EACCES:
                cause = "ports below 1024 need root or CAP_NET_BIND_SERVICE; choose 5000"
            elif exc.errno == errno.EADDRNOTAVAIL:
                setting, cause = "http.host", f"{host} is not an address of this host"
            raise Unusable(
                f"{setting} ({env_name(setting)}): cannot listen on {host}:{number}: {cause}"
            ) from exc


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return str(os.getuid())
