"""GET /healthz: 200 once the gateway serves (no key needed)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get

from gateway import __version__
from gateway.api.common import json_response


@get("/healthz", opt={"auth": "public"}, tags=["health"], summary="Liveness")
async def healthz(request: Request[Any, Any, Any]) -> Response[bytes]:
    return json_response({"status": "ok", "version": __version__})
