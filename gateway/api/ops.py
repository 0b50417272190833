"""Operator endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import hmac
from typing import Any

from litestar import Request, Response, get

from gateway import __version__
from gateway.api.auth import authenticate
from gateway.api.common import json_response, services
from gateway.errors import AuthenticationRequired, NotFound
from gateway.ops import EXPOSITION_CONTENT_TYPE


@get("/healthz", opt={"auth": "public"}, tags=["health"], summary="Liveness")
async def healthz(request: Request[Any, Any, Any]) -> Response[bytes]:
    return json_response({"status": "ok", "version": __version__})


@get(
    "/readyz",
    opt={"auth": "public"},
    tags=["health"],
    summary="Readiness: the database answers, migrations are current, the spool is not backing up",
)
async def readyz(request: Request[Any, Any, Any]) -> Response[bytes]:
    readiness = await services(request).metrics.readiness()
    if readiness.ready:
        return json_response({"status": "ready"})
    return json_response({"status": "unavailable", "reason": readiness.reason}, status=503)


@get(
    "/metrics",
    opt={"auth": "public"},  # checked here: the admin key, the metrics token, or public
    tags=["health"],
    summary="Prometheus metrics (admin key, the [metrics] token, or public)",
)
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    svc = services(request)
    settings = svc.metrics_settings
    if not settings.enabled:
        raise NotFound("Metrics are disabled ([metrics] enabled = false).")
    if not settings.public:
        header = request.headers.get("authorization") or ""
        scheme, _, token = header.partition(" ")
        token_ok = (
            settings.token is not None
            and scheme.lower() == "bearer"
            and hmac.compare_digest(token.strip().encode(), settings.token.encode())
        )
        if not token_ok:
            principal = await authenticate(svc.keys, header or None, None, "admin")
            if principal.kind != "admin":
                raise AuthenticationRequired()
    body = await svc.metrics.exposition()
    return Response(content=body, media_type=EXPOSITION_CONTENT_TYPE, status_code=200)


ROUTES = [healthz, readyz, metrics]
