"""A local fake of the slice of Stripe's API that Ringside uses, for tests and demos.

It parses form-encoded requests the way Stripe does (`payload[stripe_customer_id]=...`),
checks them against the constraints of Stripe's OpenAPI document (required fields, known
parameters, lengths, integer timestamps; see `tests/gateway/test_stripe_fake.py`, which
compares these tables with the excerpt in ../shared/stripe-api, beside the checkout,
when it is present),
refuses a reused meter-event identifier within 24 hours with Stripe's own error, refuses
timestamps outside [-35 days, +5 minutes], and injects faults on demand.

The same `FakeStripe` answers over real HTTP on loopback (`with FakeStripe() as fake:`,
then point the client at `fake.url`) or as a pytest-httpx callback (`fake.httpx_callback`).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

API_KEY = "sk_test_ringside_fake_0123456789"
DEDUPE_WINDOW_S = 24 * 3600
PAST_WINDOW_S = 35 * 86_400
FUTURE_WINDOW_S = 300
MAX_SIGNIFICANT_DIGITS = 15

# From spec3.trimmed.json: PostBillingMeterEvents (additionalProperties: false).
METER_EVENT_PARAMS = {"event_name", "expand", "identifier", "payload", "timestamp"}
METER_EVENT_REQUIRED = ("event_name", "payload")
METER_EVENT_MAX_LENGTH = {"event_name": 100, "identifier": 100}
# PostCustomers: the parameters Ringside may send (a subset of the document's list).
CUSTOMER_PARAMS = {
    "address",
    "balance",
    "business_name",
    "cash_balance",
    "description",
    "email",
    "expand",
    "individual_name",
    "invoice_prefix",
    "invoice_settings",
    "metadata",
    "name",
    "next_invoice_sequence",
    "payment_method",
    "phone",
    "preferred_locales",
    "shipping",
    "source",
    "tax",
    "tax_exempt",
    "tax_id_data",
    "test_clock",
}

DROP = object()  # a response that is a dropped connection


@dataclass
class Fault:
    kind: str  # "status" | "drop"
    status: int = 500
    after_record: bool = False  # the event is recorded before the fault hits
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None


@dataclass
class Attempt:
    method: str
    path: str
    params: dict[str, Any]
    status: int | None  # None: the connection was dropped
    idempotency_key: str | None
    fault: str | None = None

    @property
    def identifier(self) -> str | None:
        value = self.params.get("identifier")
        return value if isinstance(value, str) else None


class FormError(Exception):
    pass


def parse_form(body: bytes) -> dict[str, Any]:
    """Stripe's form encoding: `a=1&b[c]=2&d[0]=x` -> {"a": "1", "b": {"c": "2"}, "d": ["x"]}."""
    out: dict[str, Any] = {}
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError as exc:
        raise FormError("The request body is not UTF-8.") from exc
    for key, value in pairs:
        if "[" in key:
            top, _, rest = key.partition("[")
            if not rest.endswith("]") or "[" in rest[:-1]:
                raise FormError(f"Unsupported nested parameter: {key}")
            sub = rest[:-1]
            container = out.setdefault(top, {})
            if not isinstance(container, dict):
                raise FormError(f"Parameter {top} given as both a value and a hash.")
            if sub in container:
                raise FormError(f"Duplicate parameter: {key}")
            container[sub] = value
        else:
            if key in out:
                raise FormError(f"Duplicate parameter: {key}")
            out[key] = value
    return out


def _error(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], dict[str, Any]]:
    err: dict[str, Any] = {"message": message, "type": type_}
    if code:
        err["code"] = code
        err["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    if param:
        err["param"] = param
    return status, dict(headers or {}), {"error": err}


def _significant_digits(text: str) -> int:
    digits = text.lstrip("-").lstrip("0")
    return len(digits) if digits else 1


class FakeStripe:
    def __init__(
        self,
        *,
        now: Callable[[], float] = time.time,
        api_key: str = API_KEY,
        meters: Iterable[str] = ("ringside_usage",),
        customers: Iterable[str] = (),
        strict_customers: bool = True,
    ) -> None:
        self.now = now
        self.api_key = api_key
        self.meters = set(meters)
        self.strict_customers = strict_customers
        self.customers: dict[str, dict[str, Any]] = {}
        self._customer_ids = itertools.count(1)
        for cid in customers:
            self.add_customer(cid)
        self.events: list[dict[str, Any]] = []
        self.attempts: list[Attempt] = []
        self.faults: deque[Fault] = deque()
        self._seen: dict[str, float] = {}  # identifier -> when first accepted
        self._idempotent: dict[str, tuple[int, dict[str, str], dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ set-up helpers
    def add_customer(self, customer_id: str | None = None, **fields: Any) -> str:
        cid = customer_id or f"cus_fake{next(self._customer_ids)}"
        self.customers[cid] = {"id": cid, "object": "customer", "deleted": False, **fields}
        return cid

    def fail_next(self, n: int = 1, status: int = 500, *, after_record: bool = False) -> None:
        body = {"error": {"type": "api_error", "message": "An unknown error occurred."}}
        for _ in range(n):
            self.faults.append(Fault("status", status, after_record, body=body))

    def rate_limit_next(self, n: int = 1) -> None:
        body = {
            "error": {
                "type": "invalid_request_error",
                "code": "rate_limit",
                "message": "Request rate limit exceeded.",
            }
        }
        for _ in range(n):
            self.faults.append(Fault("status", 429, False, body=body))

    def drop_next(self, n: int = 1, *, after_record: bool = False) -> None:
        for _ in range(n):
            self.faults.append(Fault("drop", after_record=after_record))

    # ------------------------------------------------------------------ observations
    def totals(self) -> dict[str, int]:
        """Accepted meter-event values summed per Stripe customer."""
        out: dict[str, int] = {}
        for e in self.events:
            cid = e["payload"]["stripe_customer_id"]
            out[cid] = out.get(cid, 0) + int(e["payload"]["value"])
        return out

    def meter_attempts(self) -> list[Attempt]:
        return [a for a in self.attempts if a.path == "/v1/billing/meter_events"]

    # ------------------------------------------------------------------ the API
    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], dict[str, Any]] | object:
        """One request -> (status, headers, JSON body), or DROP."""
        headers = {k.lower(): v for k, v in headers.items()}
        with self._lock:
            params: dict[str, Any] = {}
            split = urlsplit(path)
            path_only = split.path
            auth = headers.get("authorization", "")
            if auth != f"Bearer {self.api_key}":
                shown = auth.removeprefix("Bearer ")[:12]
                result: Any = _error(401, f"Invalid API Key provided: {shown}***")
                return self._log(method, path_only, params, headers, result)
            try:
                if method == "POST":
                    ctype = headers.get("content-type", "")
                    if not ctype.startswith("application/x-www-form-urlencoded"):
                        result = _error(400, f"Unsupported content type {ctype!r}.")
                        return self._log(method, path_only, params, headers, result)
                    params = parse_form(body)
                if split.query:
                    params.update(parse_form(split.query.encode()))
            except FormError as exc:
                return self._log(method, path_only, params, headers, _error(400, str(exc)))
            fault = None
            if path_only == "/v1/billing/meter_events" and method == "POST" and self.faults:
                fault = self.faults.popleft()
            if fault is not None and not fault.after_record:
                return self._fault(method, path_only, params, headers, fault)
            result = self._route(method, path_only, params, headers)
            if fault is not None:
                return self._fault(method, path_only, params, headers, fault)
            return self._log(method, path_only, params, headers, result)

    def _fault(
        self,
        method: str,
        path: str,
        params: dict[str, Any],
        headers: dict[str, str],
        fault: Fault,
    ) -> Any:
        if fault.kind == "drop":
            return self._log(method, path, params, headers, DROP, fault="drop")
        result = (fault.status, dict(fault.headers), fault.body or {})
        return self._log(method, path, params, headers, result, fault=f"status_{fault.status}")

    def _log(
        self,
        method: str,
        path: str,
        params: dict[str, Any],
        headers: dict[str, str],
        result: Any,
        fault: str | None = None,
    ) -> Any:
        status = None if result is DROP else result[0]
        self.attempts.append(
            Attempt(method, path, params, status, headers.get("idempotency-key"), fault)
        )
        return result

    def _route(
        self, method: str, path: str, params: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        if method == "POST" and path == "/v1/billing/meter_events":
            return self._create_meter_event(params)
        if method == "GET" and path == "/v1/billing/meters":
            return 200, {}, self._meters()
        if method == "POST" and path == "/v1/customers":
            key = headers.get("idempotency-key")
            if key and key in self._idempotent:
                status, h, body = self._idempotent[key]
                return status, {**h, "idempotent-replayed": "true"}, body
            result = self._create_customer(params)
            if key:
                self._idempotent[key] = result
            return result
        if method == "GET" and path.startswith("/v1/customers/"):
            cid = path.removeprefix("/v1/customers/")
            if cid not in self.customers:
                return _error(
                    404, f"No such customer: '{cid}'", code="resource_missing", param="id"
                )
            return 200, {}, self.customers[cid]
        return _error(404, f"Unrecognized request URL ({method}: {path}).")

    def _create_meter_event(self, p: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
        for name in p:
            if name not in METER_EVENT_PARAMS:
                return _error(
                    400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name
                )
        for name in METER_EVENT_REQUIRED:
            if name not in p:
                return _error(
                    400, f"Missing required param: {name}.", code="parameter_missing", param=name
                )
        for name, limit in METER_EVENT_MAX_LENGTH.items():
            value = p.get(name)
            if value is not None and (not isinstance(value, str) or len(value) > limit):
                return _error(
                    400,
                    f"Invalid {name}: must be a string of at most {limit} characters.",
                    code="parameter_invalid_string",
                    param=name,
                )
        payload = p["payload"]
        if not isinstance(payload, dict):
            return _error(400, "Invalid hash", code="parameter_invalid_hash", param="payload")
        now = self.now()
        ts_text = p.get("timestamp")
        if ts_text is not None:
            if not isinstance(ts_text, str) or not ts_text.lstrip("-").isdigit():
                return _error(
                    400,
                    f"Invalid integer: {ts_text}",
                    code="parameter_invalid_integer",
                    param="timestamp",
                )
            ts = int(ts_text)
            if ts < now - PAST_WINDOW_S or ts > now + FUTURE_WINDOW_S:
                return _error(
                    400,
                    "Timestamp must be within the past 35 calendar days and at most 5 minutes "
                    "in the future.",
                    param="timestamp",
                )
        else:
            ts = int(now)
        if p["event_name"] not in self.meters:
            return _error(
                400,
                f"No active meter found for event_name '{p['event_name']}'.",
                param="event_name",
            )
        customer = payload.get("stripe_customer_id")
        value = payload.get("value")
        if not customer:
            return _error(
                400,
                "Missing payload key stripe_customer_id.",
                param="payload[stripe_customer_id]",
            )
        if value is None:
            return _error(400, "Missing payload key value.", param="payload[value]")
        if not value.lstrip("-").isdigit() or _significant_digits(value) > MAX_SIGNIFICANT_DIGITS:
            return _error(
                400,
                "The meter event value must be an integer with at most 15 significant digits.",
                param="payload[value]",
            )
        if self.strict_customers and (
            customer not in self.customers or self.customers[customer].get("deleted")
        ):
            return _error(
                400,
                f"No such customer: '{customer}'",
                code="resource_missing",
                param="payload[stripe_customer_id]",
            )
        identifier = p.get("identifier") or f"fake_{next(self._ids)}"
        seen = self._seen.get(identifier)
        if seen is not None and now - seen < DEDUPE_WINDOW_S:
            return _error(
                400,
                f"An event already exists with identifier {identifier}.",
                headers={"Stripe-Should-Retry": "false"},
            )
        self._seen[identifier] = now
        event = {
            "object": "billing.meter_event",
            "created": int(now),
            "event_name": p["event_name"],
            "identifier": identifier,
            "livemode": False,
            "payload": dict(payload),
            "timestamp": ts,
        }
        self.events.append(event)
        return 200, {}, event

    def _meters(self) -> dict[str, Any]:
        data = [
            {
                "id": f"mtr_fake_{i}",
                "object": "billing.meter",
                "created": 0,
                "customer_mapping": {"event_payload_key": "stripe_customer_id", "type": "by_id"},
                "default_aggregation": {"formula": "sum"},
                "display_name": name,
                "event_name": name,
                "event_time_window": None,
                "livemode": False,
                "status": "active",
                "status_transitions": {"deactivated_at": None},
                "updated": 0,
                "value_settings": {"event_payload_key": "value"},
            }
            for i, name in enumerate(sorted(self.meters))
        ]
        return {"object": "list", "data": data, "has_more": False, "url": "/v1/billing/meters"}

    def _create_customer(self, p: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
        for name in p:
            if name not in CUSTOMER_PARAMS:
                return _error(
                    400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name
                )
        metadata = p.get("metadata", {})
        if not isinstance(metadata, dict):
            return _error(400, "Invalid hash", code="parameter_invalid_hash", param="metadata")
        cid = self.add_customer(
            None,
            name=p.get("name"),
            email=p.get("email"),
            metadata=metadata,
            created=int(self.now()),
            livemode=False,
        )
        customer = dict(self.customers[cid])
        customer.pop("deleted", None)
        return 200, {}, customer

    # ------------------------------------------------------------------ pytest-httpx
    def httpx_callback(self, request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.decode()
        result = self.handle(request.method, path, dict(request.headers), request.read())
        if result is DROP:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        status, headers, body = result  # type: ignore[misc]
        return httpx.Response(status, headers={"request-id": "req_fake", **headers}, json=body)

    # ------------------------------------------------------------------ loopback HTTP
    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeStripe:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                result = fake.handle(self.command, self.path, dict(self.headers.items()), body)
                if result is DROP:
                    self.close_connection = True
                    return
                status, headers, payload = result  # type: ignore[misc]
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.send_header("Request-Id", f"req_fake{len(fake.attempts)}")
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

            do_GET = _serve
            do_POST = _serve
            do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-stripe", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeStripe:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
