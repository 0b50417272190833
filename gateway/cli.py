"""Headless command line: `ringside serve` and `python -m gateway`. Never imports Textual."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway import __version__
from gateway.config import ConfigError, Settings, load_settings, one_line
from gateway.logs import configure as configure_logging


def add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8787)")
    add_storage_options(parser)


def add_storage_options(parser: argparse.ArgumentParser, default: Any = None) -> None:
    """Where the gateway's state is: --config, --data-dir, --database-url."""
    parser.add_argument("--config", default=default, help="TOML config file (or RINGSIDE_CONFIG)")
    parser.add_argument("--data-dir", default=default, help="data directory (default ./.ringside)")
    parser.add_argument(
        "--database-url",
        default=default,
        help="sqlite:///path or postgresql://... (or RINGSIDE_DATABASE_URL)",
    )


def add_version_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=f"ringside {__version__}")


def add_serve_options(parser: argparse.ArgumentParser) -> None:
    add_server_options(parser)
    parser.add_argument(
        "--workers",
        type=_workers,
        default=1,
        help="worker processes sharing the port (default 1; at most the number of cores x 4)",
    )


def _workers(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--workers takes a whole number, not {value!r}") from None
    limit = (os.cpu_count() or 1) * 4
    if not 1 <= n <= limit:
        raise argparse.ArgumentTypeError(f"--workers must be between 1 and {limit}")
    return n


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
        "data_dir": getattr(args, "data_dir", None),
        "database_url": getattr(args, "database_url", None),
    }
    return load_settings(getattr(args, "config", None), overrides=overrides)


def serve(args: argparse.Namespace) -> int:
    from gateway.runtime import Runtime

    settings = settings_from_args(args)
    configure_logging(settings.server.log_level, settings.server.log_format)
    runtime = Runtime(settings)
    # The port first: a port in use is one line and exit 2, before anything else starts.
    runtime.listen()
    workers: int = getattr(args, "workers", 1)
    database = (
        "postgresql"
        if settings.server.database_url and not settings.database_url.startswith("sqlite")
        else settings.database_url
    )
    log = logging.getLogger("ringside")
    if workers > 1:
        log.info(
            "Ringside serving on %s with %d workers (database: %s)",
            runtime.base_url,
            workers,
            database,
        )
        return runtime.run_workers(workers)
    runtime.prepare()
    runtime.announce()
    log.info("Ringside serving on %s (database: %s)", runtime.base_url, database)
    runtime.run()
    return 0


# ---------------------------------------------------------------- backup, restore, migrate

DATA_COMMANDS = ("backup", "restore", "migrate", "keys")


def add_data_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`backup FILE`, `restore FILE`, `migrate --to URL`, each with the storage options.

    Their storage options default to "not given", so `ringside --data-dir D backup F` keeps
    a --data-dir given before the command."""
    p = sub.add_parser(
        "backup",
        help="copy the SQLite ledger to FILE, consistently, while the gateway serves",
    )
    p.add_argument("file", metavar="FILE", type=Path, help="the backup file to write")
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")
    add_storage_options(p, argparse.SUPPRESS)
    p = sub.add_parser(
        "restore",
        help="replace the SQLite ledger with a backup (no gateway running on the data dir)",
    )
    p.add_argument("file", metavar="FILE", type=Path, help="a file `ringside backup` wrote")
    add_storage_options(p, argparse.SUPPRESS)
    p = sub.add_parser(
        "migrate",
        help="copy the SQLite ledger into an empty PostgreSQL database and verify every total",
    )
    p.add_argument(
        "--to",
        required=True,
        metavar="URL",
        help="the new, empty database: postgresql://user:password@host:5432/name",
    )
    add_storage_options(p, argparse.SUPPRESS)
    from gateway.keys_cli import add_keys_command

    add_keys_command(sub, add_storage_options)


def rotate_admin_key(args: argparse.Namespace) -> int:
    from gateway import keys_cli

    settings = settings_from_args(args)
    key_id, key = keys_cli.rotate_admin(settings, args.name)
    keys_cli.print_rotation(key_id, key, settings)
    return 0


def run_data_command(args: argparse.Namespace) -> int:
    commands = {
        "backup": backup,
        "restore": restore,
        "migrate": migrate_to,
        "keys": rotate_admin_key,  # `keys rotate-admin`, its one subcommand
    }
    return run_guarded(commands[args.command], args)


def backup(args: argparse.Namespace) -> int:
    from gateway import backup as bk

    settings = settings_from_args(args)
    copied = bk.backup(settings, args.file, force=args.force)
    live = bk.live_database(settings, command="backup")
    print(f"Backed up {live} to {copied.path} ({copied.size:,} bytes, integrity_check ok)")
    for line in bk.summary_lines(copied.summary):
        print(line)
    return 0


def restore(args: argparse.Namespace) -> int:
    from gateway import backup as bk

    settings = settings_from_args(args)
    copied = bk.restore(settings, args.file)
    schema = f"migrations up to {max(copied.versions):04d}"
    print(f"Restored {args.file} into {copied.path} (integrity_check ok, {schema})")
    for kept in copied.kept:
        what = "log" if kept.name.endswith(("-wal", "-journal")) else "database"
        print(f"  the previous {what} is kept as {kept}")
    for line in bk.summary_lines(copied.summary):
        print(line)
    return 0


def migrate_to(args: argparse.Namespace) -> int:
    from urllib.parse import urlparse

    from gateway import backup as bk
    from gateway.db import transfer

    settings = settings_from_args(args)
    target = args.to
    parsed = urlparse(target)
    if parsed.scheme not in ("postgresql", "postgres") or not parsed.path.strip("/"):
        raise ConfigError(f"--to takes postgresql://user:password@host:5432/name, got {target!r}")
    source = bk.live_database(settings, command="migrate")
    if not source.is_file():
        raise ConfigError(f"no database in {settings.server.data_dir} ({source} does not exist)")
    print(f"Copying {source} into {transfer.redact(target)}")
    try:
        moved = transfer.move_to_postgres(source, target, print)
    except transfer.Refused as exc:
        raise ConfigError(str(exc)) from None
    except Exception as exc:  # psycopg / sqlite3 / peewee: the copy's transaction rolled back
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"ringside: error: migrate failed, no rows were committed: {first}", file=sys.stderr)
        return 1
    if not moved.ok:
        for line in moved.mismatches:
            print(f"  MISMATCH {line}")
        print(
            f"ringside: error: {len(moved.mismatches)} difference(s) between SQLite and "
            f"PostgreSQL; nothing was committed ({transfer.redact(target)} keeps the schema "
            "and no rows)",
            file=sys.stderr,
        )
        return 1
    print(f"Verified: {moved.checks} checks, every table and every total equal to the nano-dollar")
    if moved.summary is not None:
        for line in bk.summary_lines(moved.summary):
            print(line)
    print(
        f"Done. Start the gateway with --database-url {transfer.redact(target)}; "
        f"keep {source} as the last SQLite copy and do not serve from it again."
    )
    return 0


def build_parser(prog: str = "ringside") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Ringside AI gateway")
    add_version_option(parser)
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("serve", help="run the gateway headless")
    add_serve_options(p)
    add_data_commands(sub)
    return parser


def run_guarded(fn: Any, *args: Any) -> int:
    """Run a command; configuration problems become one line on stderr and exit code 2."""
    try:
        return int(fn(*args) or 0)
    except ConfigError as exc:
        print(f"ringside: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser("python -m gateway")
    args = parser.parse_args(argv)
    if args.command in DATA_COMMANDS:
        return run_data_command(args)
    if args.command != "serve":
        parser.print_help()
        return 2
    return run_guarded(serve, args)
