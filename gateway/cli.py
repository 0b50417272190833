"""Headless command line: `ringside serve` and `python -m gateway`. Never imports Textual."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from gateway import __version__
from gateway.config import ConfigError, Settings, load_settings
from gateway.logs import configure as configure_logging


def add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8787)")
    parser.add_argument("--config", help="TOML config file (or RINGSIDE_CONFIG)")
    parser.add_argument("--data-dir", help="data directory (default ./.ringside)")
    parser.add_argument(
        "--database-url",
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
        "host": args.host,
        "port": args.port,
        "data_dir": args.data_dir,
        "database_url": args.database_url,
    }
    return load_settings(args.config, overrides=overrides)


def serve(args: argparse.Namespace) -> int:
    from gateway.runtime import Runtime

    settings = settings_from_args(args)
    configure_logging(settings.server.log_level, settings.server.log_format)
    runtime = Runtime(settings)
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


def build_parser(prog: str = "ringside") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Ringside AI gateway")
    add_version_option(parser)
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("serve", help="run the gateway headless")
    add_serve_options(p)
    return parser


def run_guarded(fn: Any, *args: Any) -> int:
    """Run a command; configuration problems become one line on stderr and exit code 2."""
    try:
        return int(fn(*args) or 0)
    except ConfigError as exc:
        print(f"ringside: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser("python -m gateway")
    args = parser.parse_args(argv)
    if args.command != "serve":
        parser.print_help()
        return 2
    return run_guarded(serve, args)
