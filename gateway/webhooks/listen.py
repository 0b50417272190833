"""`ringside webhooks listen`: a tiny receiver that prints each delivery, for testing a setup.

    ringside webhooks listen --port 8788 --secret whsec_...

Register http://127.0.0.1:8788/ as an endpoint and every delivery is printed with its
event type, ids and whether its signature verifies. Answers 2xx when it does (or when no
secret was given), 400 when it does not, so the gateway's retries can be watched too;
`--fail-first N` answers 500 to the first N deliveries for the same purpose.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO

from standardwebhooks import Webhook

from gateway.webhooks.signing import WebhookVerificationError, verify

MAX_BODY = 1024 * 1024


class ListenServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        *,
        secret: str | None = None,
        out: TextIO | None = None,
        status: int = 200,
        fail_first: int = 0,
        show_body: bool = True,
    ) -> None:
        super().__init__(address, _Handler)
        self.secret = secret
        self.out = out or sys.stdout
        self.status = status
        self.fail_first = fail_first
        self.show_body = show_body
        self.seen: Counter[str] = Counter()
        self.received = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        if isinstance(host, bytes):
            host = host.decode()
        return f"http://{host}:{port}/"

    def handle_delivery(self, headers: dict[str, str], body: bytes) -> int:
        """Print one delivery; returns the status to answer."""
        with self.lock:
            self.received += 1
            number = self.received
            msg_id = headers.get("webhook-id", "")
            self.seen[msg_id] += 1
            repeat = self.seen[msg_id]
        payload: Any = None
        if self.secret:
            try:
                payload = verify(self.secret, body, headers)
                check, status = "signature verified", self.status
            except WebhookVerificationError as exc:
                check, status = f"signature INVALID ({exc})", 400
        else:
            check, status = "signature not checked (no --secret)", self.status
        if payload is None:
            try:
                payload = json.loads(body)
            except ValueError:
                payload = None
        if status < 400 and number <= self.fail_first:
            status = 500
        event = payload if isinstance(payload, dict) else {}
        customer = (event.get("data") or {}).get("customer") or {}
        line = " ".join(
            part
            for part in (
                datetime.now().strftime("%H:%M:%S"),
                str(event.get("type", "?")),
                msg_id or "(no webhook-id)",
                str(customer.get("id") or ""),
                f"- {check}",
                f"- answered {status}",
                f"(delivery {repeat} of this id)" if repeat > 1 else "",
            )
            if part
        )
        with self.lock:
            print(line, file=self.out)
            if self.show_body:
                text = (
                    json.dumps(payload, indent=2)
                    if payload is not None
                    else body[:2000].decode("utf-8", "replace")
                )
                print(_indent(text), file=self.out)
            self.out.flush()
        return status


class _Handler(BaseHTTPRequestHandler):
    server: ListenServer
    server_version = "ringside-listen"

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_BODY:
            self._answer(413)
            return
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        self._answer(self.server.handle_delivery(headers, body))

    def do_GET(self) -> None:
        self._answer(200, b"ringside webhooks listen: POST deliveries here\n")

    def _answer(self, status: int, body: bytes = b"") -> None:
        self.send_response(status)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per delivery from handle_delivery is enough


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8788, help="port (default 8788; 0 = any)")
    parser.add_argument(
        "--secret", help="the endpoint's whsec_... secret: verify every signature with it"
    )
    parser.add_argument(
        "--status", type=int, default=200, help="status to answer valid deliveries (default 200)"
    )
    parser.add_argument(
        "--fail-first",
        type=int,
        default=0,
        metavar="N",
        help="answer 500 to the first N deliveries, to watch the retries",
    )
    parser.add_argument("--quiet", action="store_true", help="one line per delivery, no body")


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if args.secret:
        try:
            Webhook(args.secret)
        except Exception:
            print("ringside: error: --secret is not a valid whsec_... secret", file=sys.stderr)
            return 2
    try:
        server = ListenServer(
            (args.host, args.port),
            secret=args.secret,
            out=out,
            status=args.status,
            fail_first=args.fail_first,
            show_body=not args.quiet,
        )
    except OSError as exc:
        print(f"ringside: error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    print(f"Listening for webhooks on {server.url} (Ctrl-C to stop)", file=out)
    print(
        "Register it:  curl -X POST http://127.0.0.1:8787/v1/webhook_endpoints "
        '-H "Authorization: Bearer $RINGSIDE_ADMIN_KEY" '
        f"-H 'content-type: application/json' -d '{{\"url\": \"{server.url}\"}}'",
        file=out,
    )
    if not args.secret:
        print("Signatures are not checked: pass --secret whsec_... to verify them.", file=out)
    out.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def build_parser(prog: str = "ringside webhooks listen") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Print webhook deliveries as they arrive (a local test receiver)."
    )
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
