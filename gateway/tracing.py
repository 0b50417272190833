"""OpenTelemetry traces for metered calls (optional: `pip install 'ringside[otel]'`).

With `[tracing] enabled = true`, each proxied call is a server span with children for the
reservation, the upstream call (GenAI semantic-convention attributes: `gen_ai.system`,
`gen_ai.request.model`, `gen_ai.usage.input_tokens`, ...) and the settlement, carrying the
customer and the cost and price. Spans go to an OTLP/HTTP collector in batches, off the
request path. Without the setting nothing is created: the hot path pays nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.config import ConfigError, TracingSettings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.trace import Tracer


def build_tracer(
    settings: TracingSettings, processor: SpanProcessor | None = None
) -> tuple[Tracer, TracerProvider] | None:
    """The tracer calls are traced with, or None when tracing is off. `processor` replaces
    the OTLP exporter (tests pass an in-memory one)."""
    if not settings.enabled:
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio
    except ImportError:
        raise ConfigError(
            "[tracing] enabled = true needs OpenTelemetry: pip install 'ringside[otel]'"
        ) from None
    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.service_name}),
        sampler=ParentBasedTraceIdRatio(settings.sample_ratio),
    )
    if processor is None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise ConfigError(
                "[tracing] needs the OTLP exporter: pip install 'ringside[otel]'"
            ) from None
        processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.endpoint))
    provider.add_span_processor(processor)
    return provider.get_tracer("ringside"), provider


def set_attributes(span: Any, attributes: dict[str, Any]) -> None:
    span.set_attributes({k: v for k, v in attributes.items() if v is not None})
