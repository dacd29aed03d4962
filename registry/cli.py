"""The `registry` command: serve, migrate, --version."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from registry import __version__
from registry.config import ConfigError, Settings, load_settings

log = logging.getLogger("registry")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="registry", description=__doc__)
    parser.add_argument("--version", action="version", version=f"registry {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("serve", "run the registry (applies pending migrations first)"),
        ("migrate", "apply pending database migrations and exit"),
    ):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--config", help="YAML settings file (default: $REGISTRY_CONFIG)")
    args = parser.parse_args(argv)

    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"registry: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Alembic narrates every plugin it loads at INFO; the operator needs only our summary.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.root.level))
    if args.command == "migrate":
        _migrate(settings)
        return 0
    return _serve(settings, args.config)


def _migrate(settings: Settings) -> None:
    from registry.metadata.migrate import upgrade

    os.makedirs(settings.data_dir, exist_ok=True)
    upgrade(settings.database_url)
    log.info("database is at the latest schema")


def _serve(settings: Settings, config_path: str | None) -> int:
    import uvicorn

    _migrate(settings)
    if config_path:
        # Worker processes rebuild the settings from the same file and environment.
        os.environ["REGISTRY_CONFIG"] = os.path.abspath(config_path)
    log.info(
        "registry %s listening on %s:%d (data in %s)",
        __version__,
        settings.http.host,
        settings.http.port,
        os.path.abspath(settings.data_dir),
    )
    uvicorn.run(
        "registry.app:app_from_environment",
        factory=True,
        host=settings.http.host,
        port=settings.http.port,
        workers=settings.http.workers,
        log_level=settings.log_level,
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=30,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
