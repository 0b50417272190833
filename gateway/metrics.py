"""Prometheus metrics (`prometheus_client`), on a registry of the gateway's own.

`Metrics` holds every series; the metering service counts calls, money and latency as they
happen (a few label lookups per call), and the gauges that describe durable state (webhook
outbox, Stripe sync, spooled settlements) are read from the database when `/metrics` is
scraped (`gateway.ops.MetricsService`). Series names follow Prometheus'
conventions (`_total`, `_seconds`, base units); money is in USD.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from gateway.ledger import NANOS_PER_USD

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)
LEDGER_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)


class Metrics:
    def __init__(self, *, per_customer: bool = False) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.per_customer = per_customer
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        # ---------------------------------------------------------------- proxy
        self.requests = Counter(
            "ringside_requests",
            "Proxied calls by route, provider, model and HTTP status (refusals included).",
            ["route", "provider", "model", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "ringside_request_duration_seconds",
            "Time from the request to the end of the answer (a stream's last byte).",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_duration = Histogram(
            "ringside_upstream_duration_seconds",
            "The provider's part: from forwarding to its whole answer (or its stream's end).",
            ["provider"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stream_bytes = Counter(
            "ringside_stream_bytes", "Bytes relayed to clients in streams.", registry=r
        )
        # ---------------------------------------------------------------- money
        self.reserve_duration = Histogram(
            "ringside_ledger_reserve_seconds",
            "Taking a call's hold (one guarded write).",
            buckets=LEDGER_BUCKETS,
            registry=r,
        )
        self.settle_duration = Histogram(
            "ringside_ledger_settle_seconds",
            "Settling a call (its charge, log row, rollups and events).",
            buckets=LEDGER_BUCKETS,
            registry=r,
        )
        self.refused = Counter(
            "ringside_refused",
            "Calls refused before forwarding, by error code (402, 403, 429, 503, ...).",
            ["code"],
            registry=r,
        )
        money_labels = ["provider", "model", *(["customer"] if per_customer else [])]
        self.cost = Counter(
            "ringside_cost_usd",
            "What providers charged for settled calls.",
            money_labels,
            registry=r,
        )
        self.price = Counter(
            "ringside_price_usd",
            "What customers were charged for settled calls.",
            money_labels,
            registry=r,
        )
        # A gauge: with a markup below 1 the margin can fall.
        self.margin = Gauge(
            "ringside_margin_usd", "Price minus cost of settled calls.", money_labels, registry=r
        )
        self.holds_open = Gauge(
            "ringside_holds_open", "Holds of calls in flight on this instance.", registry=r
        )
        self.spooled = Gauge(
            "ringside_settlements_spooled",
            "Settlements waiting in this instance's spool for the database to come back.",
            registry=r,
        )
        # ---------------------------------------------------------------- webhooks
        self.outbox_pending = Gauge(
            "ringside_webhook_outbox_pending", "Webhook deliveries not yet delivered.", registry=r
        )
        self.outbox_oldest = Gauge(
            "ringside_webhook_outbox_oldest_age_seconds",
            "Age of the oldest pending webhook delivery.",
            registry=r,
        )
        self.deliveries = Gauge(
            "ringside_webhook_deliveries",
            "Webhook deliveries in the outbox, by state.",
            ["state"],
            registry=r,
        )
        self.endpoints_disabled = Gauge(
            "ringside_webhook_endpoints_disabled", "Webhook endpoints disabled.", registry=r
        )
        # ---------------------------------------------------------------- Stripe
        self.stripe_last_sync = Gauge(
            "ringside_stripe_last_sync_timestamp_seconds",
            "When the last successful Stripe sync finished (0: never).",
            registry=r,
        )
        self.stripe_batches = Gauge(
            "ringside_stripe_batches",
            "Stripe meter-event batches by state (pushed, claimed, uncertain, ...).",
            ["state"],
            registry=r,
        )
        self.stripe_unpushable_usd = Gauge(
            "ringside_stripe_unpushable_usd",
            "Price of usage too old for Stripe to accept, reported rather than pushed.",
            registry=r,
        )

    # ------------------------------------------------------------------ recording
    def call(self, route: str, provider: str, model: str, status: int) -> None:
        self.requests.labels(route, provider, model, str(status)).inc()

    def money(
        self, provider: str, model: str, cost_nanos: int, price_nanos: int, customer: str | None
    ) -> None:
        labels = (provider, model, customer or "") if self.per_customer else (provider, model)
        self.cost.labels(*labels).inc(cost_nanos / NANOS_PER_USD)
        self.price.labels(*labels).inc(price_nanos / NANOS_PER_USD)
        self.margin.labels(*labels).inc((price_nanos - cost_nanos) / NANOS_PER_USD)
