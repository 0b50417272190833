"""Entry point `ringside`. The dashboard (Textual) is imported lazily, so `ringside serve`
stays headless and starts fast."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gateway.cli import (
    DATA_COMMANDS,
    add_data_commands,
    add_serve_options,
    add_server_options,
    add_version_option,
    run_data_command,
    run_guarded,
    serve,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ringside",
        description="Ringside: self-hosted AI gateway with per-customer metering, budgets "
        "and wallets. With no command, starts the dashboard with the gateway embedded.",
    )
    add_version_option(parser)
    add_server_options(parser)
    sub = parser.add_subparsers(dest="command")
    serve_p = sub.add_parser("serve", help="run the gateway headless")
    add_serve_options(serve_p)
    add_data_commands(sub)
    demo_p = sub.add_parser("demo", help="dashboard + mock provider + simulated traffic")
    add_server_options(demo_p)
    webhooks_p = sub.add_parser("webhooks", help="webhook tools")
    webhooks_sub = webhooks_p.add_subparsers(dest="webhooks_command", required=True)
    listen_p = webhooks_sub.add_parser(
        "listen", help="print webhook deliveries as they arrive (a local test receiver)"
    )
    from gateway.webhooks.listen import add_arguments as add_listen_arguments

    add_listen_arguments(listen_p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        return run_guarded(serve, args)
    if args.command in DATA_COMMANDS:
        return run_data_command(args)
    if args.command == "webhooks":
        from gateway.webhooks.listen import run as listen

        return listen(args)
    from ringside_tui.launch import run_dashboard  # imports Textual

    return run_guarded(run_dashboard, args, args.command == "demo")


if __name__ == "__main__":
    sys.exit(main())
