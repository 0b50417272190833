"""Does the dashboard slow the gateway down? And does it keep up with 10,000 customers?

    .venv/bin/python bench/dashboard_latency.py [--customers 10000] [--requests 1000]
        [--background-rps 10] [--rounds 2] [--mode inprocess|tmux]

Seeds a data directory with N customers and a month of daily usage (direct inserts:
this is fixture data, not a dashboard action), then, alternating rounds:

- headless: the gateway alone (Runtime.start_in_thread, no Textual in the process);
- dashboard: the same gateway with the dashboard running on the Customers tab (10,000
  live rows re-diffed on every refresh), while steady background traffic keeps the
  bus busy and the table changing.

In each round a client in a separate process sends `--requests` sequential chat calls
through the real HTTP port (mock provider, no simulated upstream latency, so the figure
is the gateway's own overhead) and reports per-request latency. The result is p50/p99
for both modes and their ratio.

`--mode inprocess` (default) runs the dashboard headless inside this process
(`App.run_test`: layout, render and diff all happen; only the terminal write is
skipped). `--mode tmux` runs the real `ringside` command in a 120x36 tmux session
(a real terminal, real redraws) against `ringside serve` for the headless rounds.

The dashboard rounds also report its own refresh timings: the snapshot query (on the
gateway's reader threads) and the diff applied on the UI thread.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ADMIN_KEY = "bench-admin-key-0123456789"
HOT_CUSTOMERS = 200  # the measured and background calls spread over these


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


# ---------------------------------------------------------------------------- seeding


def seed(data_dir: Path, customers: int) -> None:
    """N customers, their month's budget rows and wallets, daily usage for every day so far."""
    from gateway.clock import day_of, month_of, to_ms
    from gateway.config import load_settings
    from gateway.db.database import Database
    from gateway.db.migrate import migrate
    from gateway.db.models import BudgetPeriod, Customer, UsageDaily, Wallet
    from gateway.ids import new_id

    settings = load_settings(None, env={}, overrides={"data_dir": str(data_dir)})
    db = Database(settings.database_url)
    migrate(db)
    now = datetime.now(UTC)
    now_ms = to_ms(now)
    rng = random.Random(1)

    def write() -> int:
        if Customer.select().count() >= customers:
            return 0
        rows, periods, wallets, usage = [], [], [], []
        for i in range(customers):
            cid = new_id("cus")
            prepaid = i % 3 == 0
            budget = None if prepaid else rng.choice([50, 100, 250, 1000]) * 10**9
            rows.append(
                {
                    "id": cid,
                    "external_id": f"bench-{i:05d}",
                    "name": f"Customer {i:05d}",
                    "status": "active",
                    "monthly_budget_nanos": budget,
                    "prepaid": prepaid,
                    "low_balance_threshold_nanos": 5 * 10**9 if prepaid else None,
                    "metadata": {},
                    "created_ms": now_ms,
                    "updated_ms": now_ms,
                }
            )
            spent = 0
            for d in range(1, now.day + 1):
                cost = rng.randint(10**6, 2 * 10**8)
                spent += cost
                usage.append(
                    {
                        "day": day_of(now.replace(day=d)),
                        "customer_id": cid,
                        "model": "mock/mock-fast",
                        "requests": rng.randint(1, 400),
                        "input_tokens": rng.randint(1000, 100000),
                        "output_tokens": rng.randint(100, 40000),
                        "cost_nanos": cost,
                        "price_nanos": cost * 13 // 10,
                    }
                )
            periods.append(
                {"customer_id": cid, "period": month_of(now), "spent_nanos": spent, "held_nanos": 0}
            )
            if prepaid:
                wallets.append(
                    {
                        "customer_id": cid,
                        "balance_nanos": rng.randint(0, 500) * 10**9,
                        "held_nanos": 0,
                        "updated_ms": now_ms,
                    }
                )
        with db.tx():
            for table, data in (
                (Customer, rows),
                (BudgetPeriod, periods),
                (Wallet, wallets),
                (UsageDaily, usage),
            ):
                for start in range(0, len(data), 500):
                    table.insert_many(data[start : start + 500]).execute()
        return len(rows)

    started = time.perf_counter()
    made = db.run_sync(write)
    db.close()
    if made:
        print(f"seeded {made:,} customers in {time.perf_counter() - started:.1f}s", flush=True)


def hot_customers(n: int) -> list[str]:
    # Prepaid customers (every third) get refused once their wallet is empty: use the rest.
    return [f"bench-{i:05d}" for i in range(n * 3) if i % 3][:n]


# ---------------------------------------------------------------------------- clients


def run_client(base_url: str, n: int) -> dict[str, Any]:
    """N sequential calls; latencies in ms. Runs in its own process."""
    import httpx

    customers = hot_customers(HOT_CUSTOMERS)
    latencies: list[float] = []
    errors = 0
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    body = {
        "model": "fc:mock/mock-fast",
        "messages": [{"role": "user", "content": "ping [mock:tokens=20]"}],
        "max_tokens": 40,
    }
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        for _ in range(20):  # warm the connection and the key cache
            client.post("/v1/chat/completions", json=body, headers={"FC-Customer": customers[0]})
        for i in range(n):
            t0 = time.perf_counter()
            r = client.post(
                "/v1/chat/completions", json=body, headers={"FC-Customer": customers[i % 150]}
            )
            latencies.append((time.perf_counter() - t0) * 1000)
            errors += r.status_code != 200
    return {"latencies_ms": latencies, "errors": errors}


def run_background(base_url: str, rps: float, seconds: float) -> dict[str, Any]:
    """Steady concurrent traffic so the dashboard has a moving table to redraw."""
    import httpx

    customers = hot_customers(HOT_CUSTOMERS)[150:]

    async def main() -> int:
        sent = 0
        async with httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30
        ) as client:
            deadline = time.monotonic() + seconds
            tasks: set[asyncio.Task[Any]] = set()
            while time.monotonic() < deadline:
                body = {
                    "model": random.choice(["fc:mock/mock-fast", "fc:mock/mock-smart"]),
                    "messages": [{"role": "user", "content": "bg [mock:sleep_ms=150]"}],
                    "max_tokens": 200,
                }
                t = asyncio.create_task(
                    client.post(
                        "/v1/chat/completions",
                        json=body,
                        headers={"FC-Customer": random.choice(customers)},
                    )
                )
                tasks.add(t)
                t.add_done_callback(tasks.discard)
                sent += 1
                await asyncio.sleep(1 / rps)
            if tasks:
                await asyncio.wait(tasks)
        return sent

    return {"sent": asyncio.run(main())}


def _spawn_sync(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, check=True
    ).stdout
    return json.loads(out.decode().strip().splitlines()[-1])


async def spawn(*args: str) -> dict[str, Any]:
    # A thread, not asyncio's subprocess support: the gateway's uvloop.install() swaps the
    # process-wide loop policy, and the running loop then has no child watcher.
    return await asyncio.to_thread(_spawn_sync, *args)


async def measure(base_url: str, n: int, rps: float) -> dict[str, Any]:
    """The sequential client, with background traffic for as long as it runs."""
    estimate = max(5.0, n * 0.02)
    client = asyncio.create_task(spawn("--client", base_url, str(n)))
    background = (
        asyncio.create_task(spawn("--background", base_url, str(rps), str(estimate)))
        if rps > 0
        else None
    )
    result = await client
    if background is not None:
        result["background"] = (await background)["sent"]
    return result


# ---------------------------------------------------------------------------- modes


def summary(latencies: list[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(latencies), 2),
        "p90": round(pct(latencies, 90), 2),
        "p99": round(pct(latencies, 99), 2),
        "max": round(max(latencies), 2),
    }


async def inprocess(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    from gateway.config import load_settings
    from gateway.runtime import Runtime
    from ringside_tui.app import RingsideApp

    settings = load_settings(
        None,
        env={"RINGSIDE_ADMIN_KEY": ADMIN_KEY},
        overrides={"data_dir": str(data_dir), "port": free_port()},
    )
    rt = Runtime(settings)
    gw = rt.prepare()
    rt.start_in_thread()
    results: dict[str, list[float]] = {"headless": [], "dashboard": []}
    ui: dict[str, Any] = {}
    try:
        for round_no in range(args.rounds):
            r = await measure(rt.base_url, args.requests, args.background_rps)
            results["headless"] += r["latencies_ms"]
            print(f"round {round_no + 1} headless: {summary(r['latencies_ms'])}", flush=True)

            app = RingsideApp(gw, base_url=rt.base_url)
            async with app.run_test(size=(120, 36)) as pilot:
                t0 = time.perf_counter()
                await pilot.press("2")
                view = app.views.customers
                while view.table.row_count < args.customers:
                    await pilot.pause(0.05)
                first_load = time.perf_counter() - t0
                app.refresh_loop.timings.clear()
                r = await measure(rt.base_url, args.requests, args.background_rps)
                results["dashboard"] += r["latencies_ms"]
                timings = [t for t in app.refresh_loop.timings if t.view == "customers"]
                # The keys an operator presses: a filter keystroke and a re-sort, 10k rows.
                t1 = time.perf_counter()
                await pilot.press("slash", "9")
                while view.table.row_count == args.customers:
                    await pilot.pause(0.01)
                filter_s = time.perf_counter() - t1
                t2 = time.perf_counter()
                await pilot.press("escape")
                while view.table.row_count < args.customers:
                    await pilot.pause(0.01)
                unfilter_s = time.perf_counter() - t2
                t3 = time.perf_counter()
                await pilot.press("o")
                await pilot.pause()
                sort_s = time.perf_counter() - t3
            print(f"round {round_no + 1} dashboard: {summary(r['latencies_ms'])}", flush=True)
            ui = {
                "rows": args.customers,
                "first_load_s": round(first_load, 2),
                "refreshes": len(timings),
                "query_ms_p50": round(statistics.median(t.query_s for t in timings) * 1000, 1),
                "query_ms_max": round(max(t.query_s for t in timings) * 1000, 1),
                "apply_ms_p50": round(statistics.median(t.apply_s for t in timings) * 1000, 1),
                "apply_ms_max": round(max(t.apply_s for t in timings) * 1000, 1),
                "filter_keystroke_ms": round(filter_s * 1000, 1),
                "clear_filter_ms": round(unfilter_s * 1000, 1),
                "resort_ms": round(sort_s * 1000, 1),
            }
    finally:
        rt.stop()
    return {"latency": results, "ui": ui}


def _tmux(*args: str) -> None:
    subprocess.run(["tmux", *args], check=True)


def _wait_healthy(base_url: str, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{base_url} never became healthy")


def tmux_mode(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    if shutil.which("tmux") is None:
        raise SystemExit("--mode tmux needs tmux")
    ringside = str(Path(sys.executable).parent / "ringside")
    env = {**os.environ, "RINGSIDE_ADMIN_KEY": ADMIN_KEY}
    results: dict[str, list[float]] = {"headless": [], "dashboard": []}
    for round_no in range(args.rounds):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        serve = subprocess.Popen(
            [ringside, "serve", "--data-dir", str(data_dir), "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_healthy(base)
            r = asyncio.run(measure(base, args.requests, args.background_rps))
            results["headless"] += r["latencies_ms"]
            print(f"round {round_no + 1} headless: {summary(r['latencies_ms'])}", flush=True)
        finally:
            serve.terminate()
            serve.wait(30)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        session = f"rsbench{os.getpid()}"
        command = f"RINGSIDE_ADMIN_KEY={ADMIN_KEY} {ringside} --data-dir {data_dir} --port {port}"
        _tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "36", command)
        try:
            _wait_healthy(base)
            time.sleep(1)
            _tmux("send-keys", "-t", session, "2")
            time.sleep(3)  # the first load of every row
            r = asyncio.run(measure(base, args.requests, args.background_rps))
            results["dashboard"] += r["latencies_ms"]
            print(f"round {round_no + 1} dashboard: {summary(r['latencies_ms'])}", flush=True)
        finally:
            _tmux("send-keys", "-t", session, "q")
            time.sleep(2)
            # Quitting the dashboard usually ended the session already.
            subprocess.run(
                ["tmux", "kill-session", "-t", session], check=False, stderr=subprocess.DEVNULL
            )
    return {"latency": results, "ui": {}}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        print(json.dumps(run_client(sys.argv[2], int(sys.argv[3]))))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--background":
        print(json.dumps(run_background(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--background-rps", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--mode", choices=("inprocess", "tmux"), default="inprocess")
    parser.add_argument("--data-dir", help="reuse a seeded data dir (default: a temp dir)")
    parser.add_argument(
        "--switch-interval",
        type=float,
        default=None,
        help="sys.setswitchinterval for the in-process run (default: what launch.py sets)",
    )
    args = parser.parse_args()
    tmp = None
    if args.data_dir:
        data_dir = Path(args.data_dir)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="ringside-bench-")
        data_dir = Path(tmp.name) / "data"
    try:
        seed(data_dir, args.customers)
        if args.mode == "inprocess":
            from ringside_tui.launch import GIL_SWITCH_INTERVAL_S

            interval = args.switch_interval or GIL_SWITCH_INTERVAL_S
            sys.setswitchinterval(interval)
            out = asyncio.run(inprocess(args, data_dir))
        else:
            out = tmux_mode(args, data_dir)
    finally:
        if tmp is not None:
            tmp.cleanup()
    head = summary(out["latency"]["headless"])
    dash = summary(out["latency"]["dashboard"])
    report = {
        "mode": args.mode,
        "customers": args.customers,
        "requests_per_mode": len(out["latency"]["headless"]),
        "background_rps": args.background_rps,
        "switch_interval_s": sys.getswitchinterval() if args.mode == "inprocess" else None,
        "headless_ms": head,
        "dashboard_ms": dash,
        "ratio_p50": round(dash["p50"] / head["p50"], 3),
        "ratio_p99": round(dash["p99"] / head["p99"], 3),
        "ui": out["ui"],
        "when": (datetime.now(UTC) - timedelta(microseconds=0)).isoformat(timespec="seconds"),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
