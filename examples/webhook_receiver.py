"""A Ringside webhook receiver, the way a billing service should write one.

    pip install standardwebhooks
    WEBHOOK_SECRET=whsec_... python examples/webhook_receiver.py --port 9000

Then register it:  POST /v1/webhook_endpoints {"url": "http://127.0.0.1:9000/webhooks"}

What it shows:
  1. Verify the signature over the *raw* body, with the endpoint's secret, before trusting
     anything (the `standardwebhooks` package; Ringside signs by the Standard Webhooks spec).
  2. Refuse stale or future timestamps (replay protection): TOLERANCE_S, 5 minutes.
  3. Deduplicate by `webhook-id`: delivery is at-least-once, and a retry or a manual replay
     carries the same id. The id is recorded in the same database transaction as the side
     effect, so a crash between the two can never apply an event twice or lose it.
  4. Answer 2xx quickly; anything else (or a timeout) makes Ringside retry with backoff.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

TOLERANCE_S = 300  # the same window the standardwebhooks package enforces


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], secret: str, db_path: str) -> None:
        super().__init__(address, Handler)
        self.webhook = Webhook(secret)
        self.db_lock = threading.Lock()
        self.db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
        self.db.executescript(
            """
            CREATE TABLE IF NOT EXISTS processed_webhooks (
                webhook_id TEXT PRIMARY KEY,
                received_at INTEGER NOT NULL
            );
            CREATE TABLE IF NOT EXISTS actions (
                webhook_id TEXT NOT NULL,
                type TEXT NOT NULL,
                customer_id TEXT,
                detail TEXT
            );
            """
        )

    def receive(self, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        """Returns (status, reason). Any 2xx tells Ringside to stop retrying."""
        try:
            timestamp = int(headers.get("webhook-timestamp", ""))
        except ValueError:
            return 400, "missing or malformed webhook-timestamp"
        if abs(time.time() - timestamp) > TOLERANCE_S:
            return 400, "timestamp outside the tolerance window (replayed or clock skew)"
        try:
            event = self.webhook.verify(body, headers)
        except WebhookVerificationError as exc:
            return 400, f"bad signature: {exc}"

        webhook_id = headers["webhook-id"]
        with self.db_lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                inserted = self.db.execute(
                    "INSERT OR IGNORE INTO processed_webhooks VALUES (?, ?)",
                    (webhook_id, int(time.time())),
                ).rowcount
                if inserted:
                    handle(self.db, webhook_id, event)
                self.db.execute("COMMIT")
            except Exception:
                self.db.execute("ROLLBACK")
                raise  # answer 500: Ringside retries, nothing was recorded
        return 200, "processed" if inserted else "duplicate, already processed"


def handle(db: sqlite3.Connection, webhook_id: str, event: dict[str, Any]) -> None:
    """The business logic, inside the dedupe transaction. Keep it quick: do slow work
    (emails, payment calls) from a queue fed here, not while Ringside waits."""
    data = event.get("data", {})
    customer = data.get("customer") or {}
    kind = event["type"]
    if kind == "wallet.low":
        detail = f"balance {data['balance_usd']} under {data['low_balance_threshold_usd']}: top up"
    elif kind == "wallet.empty":
        detail = "wallet empty: pause the paid features or charge the card on file"
    elif kind == "budget.warning":
        detail = f"{data['share']:.0%} of the monthly budget used: warn the customer"
    elif kind == "budget_exceeded":
        detail = "monthly budget reached: calls are refused until it is raised"
    elif kind == "wallet.topped_up":
        detail = f"topped up {data['amount_usd']}, balance {data['balance_usd']}"
    elif kind == "webhook_endpoint.disabled":
        detail = f"endpoint {data['webhook_endpoint']['url']} disabled: {data['reason']}"
    else:
        detail = "unknown event type: ignored"  # new types may appear; never fail on them
    db.execute(
        "INSERT INTO actions VALUES (?, ?, ?, ?)", (webhook_id, kind, customer.get("id"), detail)
    )
    print(f"{kind:<26} {customer.get('id') or '-':<34} {detail}", flush=True)


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            status, reason = self.server.receive(headers, body)
        except Exception as exc:  # a bug: let Ringside retry later
            status, reason = 500, f"error: {exc}"
        payload = json.dumps({"status": reason}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Example Ringside webhook receiver")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--db", default="webhooks.sqlite3", help="dedupe + actions database")
    args = parser.parse_args(argv)
    secret = os.environ.get("WEBHOOK_SECRET")
    if not secret:
        print("set WEBHOOK_SECRET to the endpoint's whsec_... secret", file=sys.stderr)
        return 2
    server = Receiver((args.host, args.port), secret, args.db)
    print(f"receiving on http://{args.host}:{server.server_address[1]}/webhooks", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
