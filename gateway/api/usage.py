"""Usage totals and the per-request log (read keys and up); `Accept: text/csv` streams CSV."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.response import Stream

from gateway.api.common import json_response, query, services


def wants_csv(request: Request[Any, Any, Any]) -> bool:
    return "text/csv" in request.headers.get("accept", "")


def csv_stream(lines: Any, filename: str) -> Stream:
    """A streamed CSV answer: the service's chunks go out as they are read."""
    return Stream(
        lines,
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@get(
    "/v1/usage",
    tags=["usage"],
    summary="Usage totals: requests, tokens, cost, price, margin; optional breakdown; CSV",
)
async def get_usage(request: Request[Any, Any, Any]) -> Response[Any]:
    params = query(request, "customer_id", "customer", "since", "until", "group_by")
    usage = services(request).usage
    if wants_csv(request):
        return csv_stream(await usage.usage_csv(params), "usage.csv")
    return json_response(await usage.usage(params))


@get("/v1/requests", tags=["usage"], summary="The per-request log, newest first; CSV")
async def list_requests(request: Request[Any, Any, Any]) -> Response[Any]:
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
    usage = services(request).usage
    if wants_csv(request):
        return csv_stream(await usage.requests_csv(params), "requests.csv")
    return json_response(await usage.requests(params))


ROUTES = [get_usage, list_requests]
