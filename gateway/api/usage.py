"""Usage totals and the per-request log (admin key)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get

from gateway.api.common import json_response, query, services


@get(
    "/v1/usage",
    tags=["usage"],
    summary="Usage totals: requests, tokens, cost, price, margin; optional breakdown",
)
async def get_usage(request: Request[Any, Any, Any]) -> Response[bytes]:
    params = query(request, "customer_id", "customer", "since", "until", "group_by")
    return json_response(await services(request).usage.usage(params))


@get("/v1/requests", tags=["usage"], summary="The per-request log, newest first")
async def list_requests(request: Request[Any, Any, Any]) -> Response[bytes]:
    params = query(
        request,
        "customer_id",
        "customer",
        "model",
        "status",
        "since",
        "until",
        "starting_after",
        "limit",
    )
    return json_response(await services(request).usage.requests(params))


ROUTES = [get_usage, list_requests]
