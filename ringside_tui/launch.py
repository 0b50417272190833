"""`ringside` and `ringside demo`: the gateway in a thread of its own, the dashboard in front.

Textual owns the main thread, the terminal and the signals; the gateway runs uvicorn on
its own event loop in a daemon thread (Runtime.start_in_thread), so a busy redraw never
stalls a request. Logs go to a file in the data directory, never over the screen.
Quitting the dashboard stops the demo traffic, then the gateway (in-flight calls settle).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from gateway.cli import settings_from_args
from gateway.config import ConfigError
from gateway.logs import quiet_libraries

LOG_FILE = "ringside.log"
# The GIL switch interval (1 ms, not CPython's 5 ms) is set by Runtime.prepare(): the
# gateway's loop, its database threads and the dashboard all share one interpreter lock.


def _log_to_file(data_dir: Path) -> Path:
    """Route every log record (ours, uvicorn's, warnings) to a file: the terminal is the UI's."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOG_FILE
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    quiet_libraries()
    logging.captureWarnings(True)
    return path


def run_dashboard(args: argparse.Namespace, demo: bool) -> int:
    from gateway.runtime import Runtime
    from ringside_tui.app import RingsideApp

    settings = settings_from_args(args)
    try:
        log_path = _log_to_file(settings.server.data_dir)
    except OSError as exc:
        raise ConfigError(
            f"cannot use data dir {str(settings.server.data_dir)!r}: {exc.strerror}"
        ) from None
    runtime = Runtime(settings)
    gw = runtime.prepare()
    try:
        runtime.start_in_thread()
    except ConfigError:
        runtime.stop(timeout=5)
        raise
    traffic = None
    try:
        if demo:
            from ringside_tui.demo import DemoTraffic

            traffic = DemoTraffic(gw, runtime.base_url)
            traffic.start()
        if runtime.admin_key_generated:
            note = (
                f"An admin key was generated and saved to {settings.server.data_dir}/admin_key "
                "(it is printed when you quit)."
            )
        elif settings.admin_key:
            note = "The admin key comes from RINGSIDE_ADMIN_KEY."
        else:
            note = f"The admin key is in {settings.server.data_dir}/admin_key."
        app = RingsideApp(
            gw,
            base_url=runtime.base_url,
            demo=demo,
            admin_note=f"{note} Logs: {log_path}.",
        )
        app.run()
    finally:
        if traffic is not None:
            traffic.stop()
        runtime.stop()
    runtime.announce()
    return 0
