"""PyInstaller entry point for the single-file `ringside` executable (scripts/build_binary.sh).

A onefile executable runs as two processes: PyInstaller's bootloader (the parent, which
unpacks the bundle) and the Python program (its child). The bootloader forwards every
signal it receives to the child and exits with the child's exit code, so `kill -TERM
<pid>` drains and exits 0 as `ringside serve` does.

One case needs help: a signal sent to the whole process group (Ctrl+C in a terminal,
`kill -INT -<pgid>`) reaches the child twice, once directly and once forwarded by the
bootloader. uvicorn reads a second SIGINT as "force quit" and would cut the calls in
flight instead of draining them. A SIGINT arriving within a moment of the first is that
same signal, so it is ignored; a Ctrl+C pressed again later still forces the exit.

`RINGSIDE_BINARY_SELFTEST=1 ringside` imports every module of Ringside and the parts of
its libraries that are loaded by name at run time, and exits 1 naming any that is
missing from the bundle (the build's CI test runs it).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType

DUPLICATE_WINDOW_S = 0.5

# Loaded lazily, by import string, through entry points or only on some paths: the
# analysis cannot be trusted to have seen them.
RUNTIME_IMPORTS = (
    "uvicorn.loops.uvloop",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.lifespan.on",
    "psycopg",
    "psycopg_binary",
    "standardwebhooks",
    "genai_prices",
    "prometheus_client",
    "aiohttp",
    "stripe",
    "apscheduler.triggers.cron",
    "opentelemetry.sdk.trace",
    "opentelemetry.sdk.trace.export",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
)


def _ignore_forwarded_duplicate_sigint() -> None:
    from gateway.runtime import _HeadlessServer

    first_sigint = [0.0]
    handle_exit = _HeadlessServer.handle_exit

    def handle_exit_once(self: _HeadlessServer, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGINT:
            now = time.monotonic()
            if self.should_exit and now - first_sigint[0] < DUPLICATE_WINDOW_S:
                return
            first_sigint[0] = now
        handle_exit(self, sig, frame)

    _HeadlessServer.handle_exit = handle_exit_once  # type: ignore[method-assign]


def selftest() -> int:
    import importlib
    import pkgutil

    names: list[str] = []
    for package in ("gateway", "ringside_tui"):
        path = importlib.import_module(package).__path__
        names += [package] + [
            m.name
            for m in pkgutil.walk_packages(path, f"{package}.")
            if not m.name.endswith("__main__")
        ]
    names += RUNTIME_IMPORTS
    failed: list[str] = []
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:
            failed.append(f"{name}: {type(exc).__name__}: {exc}")

    def check(what: str, probe: Callable[[], None]) -> None:
        try:
            probe()
        except Exception as exc:
            failed.append(f"{what}: {type(exc).__name__}: {exc}")

    def migrations() -> None:
        from gateway.db import migrations

        found = sorted(m.name for m in pkgutil.iter_modules(migrations.__path__))
        if not any(n.startswith("m0001") for n in found):
            raise LookupError(f"migrations not found (saw {found})")
        print(f"migrations: {', '.join(n for n in found if not n.startswith('_'))}")

    def catalog() -> None:
        from genai_prices import data_snapshot

        data_snapshot.get_snapshot().find_provider_model("gpt-4o", None, "openai", None)

    def widgets() -> None:
        import textual.widgets

        for name in textual.widgets.__all__:
            getattr(textual.widgets, name)

    def stylesheet() -> None:
        import ringside_tui

        with open(os.path.join(os.path.dirname(ringside_tui.__file__), "app.tcss")) as f:
            f.read()

    check("migrations", migrations)
    check("genai-prices catalog", catalog)
    check("textual.widgets", widgets)
    check("ringside_tui/app.tcss", stylesheet)
    for line in failed:
        print(f"FAILED {line}", file=sys.stderr)
    print(f"selftest: {len(names)} modules, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    if os.environ.get("RINGSIDE_BINARY_SELFTEST") == "1":
        sys.exit(selftest())
    if getattr(sys, "frozen", False) and "serve" in sys.argv[1:]:
        _ignore_forwarded_duplicate_sigint()
    from ringside_tui.cli import main

    sys.exit(main())
