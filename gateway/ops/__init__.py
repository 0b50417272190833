"""Operations: what the gateway reports about itself (metrics exposition, readiness)."""

from gateway.ops.service import EXPOSITION_CONTENT_TYPE, MetricsService, Readiness

__all__ = ["EXPOSITION_CONTENT_TYPE", "MetricsService", "Readiness"]
