"""What one metered call leaves behind for operators: metrics and the access log line.

The access line never carries prompts, completions or keys: the request id, the customer
id, the route, the model, the status (and error code), the latency, and the cost and
price the ledger settled.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from gateway.errors import ApiError
from gateway.ledger import Reservation, Settlement, nanos_to_text
from gateway.metrics import Metrics

access_log = logging.getLogger("ringside.access")

REFUSAL_STATUSES = frozenset({402, 403, 429, 503})


@dataclass(slots=True)
class CallTrace:
    """One call as it goes: filled in by the metering service, closed once."""

    route: str
    started: float = field(default_factory=time.perf_counter)
    provider: str = ""
    model: str = ""
    reservation: Reservation | None = None


class CallObserver:
    def __init__(self, metrics: Metrics, *, access: bool) -> None:
        self.metrics = metrics
        self.access = access

    def timed_reserve(self, started: float) -> None:
        self.metrics.reserve_duration.observe(time.perf_counter() - started)

    def timed_settle(self, started: float) -> None:
        self.metrics.settle_duration.observe(time.perf_counter() - started)

    def upstream(self, provider: str, started: float) -> None:
        self.metrics.upstream_duration.labels(provider).observe(time.perf_counter() - started)

    def done(self, trace: CallTrace, settlement: Settlement | None, status: str = "ok") -> None:
        """A call answered 200 (a stream: at its end, `status` "ok" or "cut")."""
        elapsed = time.perf_counter() - trace.started
        m = self.metrics
        m.call(trace.route, trace.provider, trace.model, 200)
        m.duration.labels(trace.route).observe(elapsed)
        r = trace.reservation
        if settlement is not None:
            m.money(
                trace.provider,
                trace.model,
                settlement.cost_nanos,
                settlement.price_nanos,
                r.customer_id if r is not None else None,
            )
        if self.access and access_log.isEnabledFor(logging.INFO):
            access_log.info(
                "%s %s %d",
                trace.route,
                status,
                200,
                extra={
                    "request_id": r.request_id if r else None,
                    "customer_id": r.customer_id if r else None,
                    "route": trace.route,
                    "model": f"{trace.provider}/{trace.model}",
                    "status": 200,
                    "outcome": status,
                    "latency_ms": round(elapsed * 1000, 2),
                    # exact decimal text, as the ledger settled it
                    "cost_usd": nanos_to_text(settlement.cost_nanos) if settlement else None,
                    "price_usd": nanos_to_text(settlement.price_nanos) if settlement else None,
                },
            )

    def failed(self, trace: CallTrace, err: ApiError) -> None:
        elapsed = time.perf_counter() - trace.started
        m = self.metrics
        m.call(trace.route, trace.provider, trace.model, err.status)
        m.duration.labels(trace.route).observe(elapsed)
        if err.status in REFUSAL_STATUSES:
            m.refused.labels(err.code).inc()
        if self.access and access_log.isEnabledFor(logging.INFO):
            r = trace.reservation
            access_log.info(
                "%s %s %d",
                trace.route,
                err.code,
                err.status,
                extra={
                    "request_id": (r.request_id if r else None) or err.headers.get("FC-Request-Id"),
                    "customer_id": (r.customer_id if r else None) or err.extra.get("customer_id"),
                    "route": trace.route,
                    "model": f"{trace.provider}/{trace.model}" if trace.provider else None,
                    "status": err.status,
                    "error_code": err.code,
                    "latency_ms": round(elapsed * 1000, 2),
                },
            )
