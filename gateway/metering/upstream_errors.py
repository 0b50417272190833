"""Upstream failures mapped to Ringside's API errors (none of them is charged)."""

from __future__ import annotations

from gateway.errors import (
    ApiError,
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRefused,
    UpstreamTimeout,
)
from gateway.providers.base import UpstreamFailure

# Upstream statuses that say the request itself was wrong: passed on with their status.
_CLIENT_ERROR_STATUSES = frozenset({400, 404, 409, 413, 422})


def map_upstream_failure(f: UpstreamFailure) -> ApiError:
    if f.kind == "timeout":
        return UpstreamTimeout(f.message)
    if f.status == 429:
        return UpstreamRateLimited(f.message)
    if f.status in (401, 403):
        return UpstreamAuthFailed(
            f"The provider refused Ringside's credentials ({f.status}): {f.message} "
            "Check the provider's API key in Ringside's environment."
        )
    if f.status is not None and f.status in _CLIENT_ERROR_STATUSES:
        return UpstreamRefused(
            f"Upstream refused the request: {f.message}",
            status=f.status,
            code=f.code if isinstance(f.code, str) else "upstream_invalid_request",
        )
    return UpstreamError(f.message)
