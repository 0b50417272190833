"""Regenerate screenshots/*.svg: the real dashboard on demo data, at a fixed size.

    python -m ringside_tui.screenshots [--out screenshots] [--warmup 8]

A throwaway data directory, the embedded gateway on a free port, the demo's seeded
customers and simulated traffic (offline, mock provider), plus two webhook endpoints
(one answering, one refusing) so the Webhooks tab has something to show, two plans (one
with a tight rate limit, so the Overview counts 429s), a billing key and an expiring read
key, and changes by several authors (a billing key, the bootstrap admin key, the dashboard)
for the customer detail's audit entries. Then the app runs headless
(`run_test(size=...)`) and each screen is saved once it has refreshed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys
import tempfile
import threading
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, TypeVar

from textual.pilot import Pilot

from gateway.audit import Actor
from gateway.config import load_settings
from gateway.runtime import Runtime
from ringside_tui.app import RingsideApp
from ringside_tui.demo import DemoTraffic
from ringside_tui.dialogs import FormScreen
from ringside_tui.screens.detail import CustomerDetailScreen

T = TypeVar("T")
SIZE = (120, 36)
SCREENS = (
    "overview",
    "customers",
    "customer_detail",
    "requests",
    "keys",
    "new_key_form",
    "webhooks",
    "stripe",
    "plans",
    "topup_form",
    "new_customer_form",
    "help",
)
# Plans for the shots: (plan, customers put on it). Pied Piper sends a call every few
# seconds of the demo's traffic, over Starter's 6 a minute: the Overview shows its 429s.
PLANS: tuple[tuple[dict[str, Any], tuple[str, ...]], ...] = (
    (
        {
            "name": "Pro",
            "external_id": "pro",
            "monthly_budget_usd": Decimal(500),
            "markup": Decimal("1.4"),
            "allowed_models": ["mock/*"],
            "limits": {"requests_per_minute": 600, "max_concurrent": 8},
        },
        ("acme", "globex"),
    ),
    (
        {
            "name": "Starter",
            "external_id": "starter",
            "monthly_budget_usd": Decimal(20),
            "limits": {"requests_per_minute": 6, "tokens_per_minute": 40_000},
        },
        ("piedpiper",),
    ),
    (
        {
            "name": "Enterprise",
            "external_id": "enterprise",
            "markup": Decimal("1.25"),
            "prepaid": True,
            "low_balance_threshold_usd": Decimal(100),
        },
        (),
    ),
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _webhook_receiver() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/ringside"
    finally:
        server.shutdown()


async def _on_gateway(rt: Runtime, coro: Coroutine[Any, Any, T]) -> T:
    assert rt.gateway is not None and rt.gateway.loop is not None
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, rt.gateway.loop))


async def _settle(
    app: RingsideApp, pilot: Pilot[None], refreshes: int = 2, limit: float = 10.0
) -> None:
    """Wait for fresh data in the visible view, then stop cursor blinking."""
    from textual.widgets import Input

    target = app.refresh_target()
    name = target.view_name if target is not None else ""
    count = app.refresh_loop.count_by_view
    start = count[name]
    waited = 0.0
    while count[name] < start + refreshes and waited < limit:
        await pilot.pause(0.1)
        waited += 0.1
    for box in app.screen.query(Input):
        box.cursor_blink = False
    await pilot.pause(0.2)


async def capture(out: Path, warmup_s: float = 8.0) -> list[Path]:
    """Write the screenshots into `out` (which must exist); returns the files written."""
    written: list[Path] = []
    with (
        tempfile.TemporaryDirectory(prefix="ringside-shots-") as tmp,
        _webhook_receiver() as ok_url,
    ):
        settings = load_settings(
            None, env={}, overrides={"data_dir": str(Path(tmp) / "data"), "port": _free_port()}
        )
        rt = Runtime(settings)
        gw = rt.prepare()
        rt.start_in_thread()
        hooks = gw.services.webhooks
        await _on_gateway(rt, hooks.create_endpoint({"url": ok_url}))
        # Nothing listens on port 9: this one keeps failing and retrying.
        await _on_gateway(rt, hooks.create_endpoint({"url": "http://127.0.0.1:9/hooks"}))
        traffic = DemoTraffic(gw, rt.base_url, rate=10, seed=42)
        traffic.start()
        try:
            await asyncio.to_thread(traffic.ready.wait, 60)
            for plan, members in PLANS:
                await _on_gateway(rt, gw.services.plans.create(plan))
                for external_id in members:
                    await _on_gateway(
                        rt,
                        gw.services.customers.update(external_id, {"plan": plan["external_id"]}),
                    )
            # Keys of other kinds than the demo's app key, one expiring in 90 days.
            keys = gw.services.keys
            billing = await _on_gateway(
                rt, keys.create({"name": "billing backend", "kind": "billing"})
            )
            expires = (datetime.now(UTC) + timedelta(days=90)).strftime("%Y-%m-%dT00:00:00Z")
            await _on_gateway(
                rt, keys.create({"name": "BI export", "kind": "read", "expires_at": expires})
            )
            # A top-up by the billing backend's key, so the wallet history, the webhook
            # outbox and the audit log have something in them; and a change by the
            # bootstrap admin key.
            await _on_gateway(
                rt,
                gw.services.wallets.topup(
                    "umbrella",
                    {"amount_usd": Decimal(50), "description": "invoice 1042"},
                    actor=Actor("billing", key_id=billing["id"]),
                ),
            )
            await _on_gateway(
                rt,
                gw.services.customers.update(
                    "umbrella", {"metadata": {"crm": "4411"}}, Actor("admin")
                ),
            )
            await asyncio.sleep(warmup_s)
            app = RingsideApp(gw, base_url=rt.base_url, demo=True)
            async with app.run_test(size=SIZE) as pilot:

                def save(name: str) -> None:
                    path = out / f"{name}.svg"
                    path.write_text(app.export_screenshot(title=f"ringside · {name}"), "utf-8")
                    written.append(path)

                await _settle(app, pilot, 3)
                save("overview")
                await pilot.press("2")
                await _settle(app, pilot)
                save("customers")
                # A prepaid customer: its detail has wallet history as well as usage, and
                # audit entries, the last one the dashboard's own (as an operator's `e`).
                umbrella = next(
                    c for c in app.customers.rows.values() if c.external_id == "umbrella"
                )
                await app.backend.update_customer(
                    umbrella.id, {"low_balance_threshold_usd": Decimal(20)}
                )
                app.open_customer(umbrella.id)
                while not isinstance(app.screen, CustomerDetailScreen):
                    await pilot.pause(0.05)
                await _settle(app, pilot)
                save("customer_detail")
                await pilot.press("escape", "3")
                await _settle(app, pilot)
                save("requests")
                await pilot.press("4")
                await _settle(app, pilot)
                save("keys")
                # The key form: a billing key expiring in 90 days (not submitted).
                await pilot.press("n")
                while not isinstance(app.screen, FormScreen):
                    await pilot.pause(0.05)
                await pilot.press(*"billing backend", "tab", "enter")
                await pilot.pause(0.3)
                await pilot.press("down", "down", "enter")
                await pilot.pause(0.3)
                await pilot.press("tab", *"90d")
                await _settle(app, pilot, 1)
                save("new_key_form")
                await pilot.press("escape")
                while isinstance(app.screen, FormScreen):
                    await pilot.pause(0.05)
                await pilot.press("5")
                await _settle(app, pilot)
                save("webhooks")
                await pilot.press("6")
                await _settle(app, pilot)
                save("stripe")
                await pilot.press("7")
                await _settle(app, pilot)
                # Pro selected: its customers, limits and models in the box below.
                plans = app.views.plans
                pro = next((k for k, p in plans.rows.items() if p.name == "Pro"), None)
                if pro is not None:
                    plans.table.move_cursor(row=plans.table.get_row_index(pro))
                    await _settle(app, pilot, 1)
                save("plans")
                await pilot.press("2")
                await _settle(app, pilot)
                hooli = next(c for c in app.customers.rows.values() if c.external_id == "hooli")
                app.actions.open_topup(hooli.id)
                while not isinstance(app.screen, FormScreen):
                    await pilot.pause(0.05)
                await pilot.press(*"25", "tab", *"card on file")
                await _settle(app, pilot, 1)
                save("topup_form")
                await pilot.press("escape", "2", "n")
                while not isinstance(app.screen, FormScreen):
                    await pilot.pause(0.05)
                await pilot.press(*"Wayne Enterprises", "tab", *"wayne", "tab", "tab")
                await pilot.press(*"lots", "enter")
                await _settle(app, pilot, 1)
                save("new_customer_form")
                await pilot.press("escape", "question_mark")
                await _settle(app, pilot, 1)
                save("help")
        finally:
            traffic.stop()
            rt.stop()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", default="screenshots", help="output directory")
    parser.add_argument("--warmup", type=float, default=8.0, help="seconds of traffic first")
    args = parser.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    for path in asyncio.run(capture(Path(args.out), args.warmup)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
