"""What one metered call leaves behind for operators: metrics and the access log line.

The access line never carries prompts, completions or keys: the request id, the customer
id, the route, the model, the status (and error code), the latency, and the cost and
price the ledger settled.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.errors import ApiError
from gateway.ledger import Reservation, Settlement, nanos_to_text
from gateway.metrics import Metrics
from gateway.tokens import TokenUsage

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

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
    span: Span | None = None


class CallObserver:
    def __init__(self, metrics: Metrics, *, access: bool, tracer: Tracer | None = None) -> None:
        self.metrics = metrics
        self.access = access
        self.tracer = tracer

    # ------------------------------------------------------------------ traces
    def begin(self, trace: CallTrace) -> None:
        if self.tracer is not None:
            from opentelemetry.trace import SpanKind

            trace.span = self.tracer.start_span(
                f"POST {trace.route}",
                kind=SpanKind.SERVER,
                attributes={"http.request.method": "POST", "http.route": trace.route},
            )

    @contextlib.contextmanager
    def child(
        self, trace: CallTrace, name: str, attributes: dict[str, Any] | None = None
    ) -> Iterator[Span | None]:
        """A child span of the call's (or nothing, without tracing)."""
        if self.tracer is None or trace.span is None:
            yield None
            return
        from opentelemetry.trace import SpanKind, set_span_in_context

        kind = SpanKind.CLIENT if name == "upstream" else SpanKind.INTERNAL
        with self.tracer.start_as_current_span(
            f"ringside.{name}" if name != "upstream" else f"chat {trace.model}",
            context=set_span_in_context(trace.span),
            kind=kind,
            attributes=attributes or {},
        ) as span:
            yield span

    def upstream_attributes(self, trace: CallTrace, system: str, operation: str) -> dict[str, Any]:
        return {
            "gen_ai.system": system,
            "gen_ai.operation.name": operation,
            "gen_ai.request.model": trace.model,
            "server.address": trace.provider,
        }

    @staticmethod
    def usage_attributes(span: Span | None, usage: TokenUsage | None) -> None:
        if span is not None and usage is not None:
            span.set_attributes(
                {
                    "gen_ai.usage.input_tokens": usage.input_tokens,
                    "gen_ai.usage.output_tokens": usage.output_tokens,
                }
            )

    def _end_span(
        self, trace: CallTrace, status: int, settlement: Settlement | None, error: str | None
    ) -> None:
        span = trace.span
        if span is None:
            return
        r = trace.reservation
        attributes: dict[str, Any] = {
            "http.response.status_code": status,
            "gen_ai.request.model": trace.model,
            "ringside.provider": trace.provider,
            "ringside.request_id": r.request_id if r else None,
            "ringside.customer_id": r.customer_id if r else None,
            "ringside.cost_usd": nanos_to_text(settlement.cost_nanos) if settlement else None,
            "ringside.price_usd": nanos_to_text(settlement.price_nanos) if settlement else None,
            "error.type": error,
        }
        span.set_attributes({k: v for k, v in attributes.items() if v is not None})
        if error is not None and status >= 500:
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, error))
        span.end()

    def timed_reserve(self, started: float) -> None:
        self.metrics.reserve_duration.observe(time.perf_counter() - started)

    def timed_settle(self, started: float) -> None:
        self.metrics.settle_duration.observe(time.perf_counter() - started)

    def upstream(self, provider: str, started: float) -> None:
        self.metrics.upstream_duration.labels(provider).observe(time.perf_counter() - started)

    def done(self, trace: CallTrace, settlement: Settlement | None, status: str = "ok") -> None:
        """A call answered 200 (a stream: at its end, `status` "ok" or "cut")."""
        elapsed = time.perf_counter() - trace.started
        self._end_span(trace, 200, settlement, None if status == "ok" else status)
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
        self._end_span(trace, err.status, None, err.code)
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
