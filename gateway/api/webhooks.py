"""Webhook endpoints, events and deliveries (admin key)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, delete, get, patch, post

from gateway.api.common import actor, json_body, json_response, query, services
from gateway.errors import InvalidRequest
from gateway.webhooks.service import WebhookService


def _webhooks(request: Request[Any, Any, Any]) -> WebhookService:
    return services(request).webhooks


@post(
    "/v1/webhook_endpoints",
    tags=["webhooks"],
    status_code=201,
    summary="Register a webhook endpoint (the signing secret is shown only here)",
)
async def create_endpoint(request: Request[Any, Any, Any]) -> Response[bytes]:
    body = await json_body(request)
    return json_response(await _webhooks(request).create_endpoint(body, actor(request)), status=201)


@get("/v1/webhook_endpoints", tags=["webhooks"], summary="List webhook endpoints with health")
async def list_endpoints(request: Request[Any, Any, Any]) -> Response[bytes]:
    params = query(request, "limit", "starting_after", "enabled")
    result = await _webhooks(request).endpoints_page(params)
    return json_response(result.to_api("/v1/webhook_endpoints"))


@get(
    "/v1/webhook_endpoints/{endpoint_id:str}",
    tags=["webhooks"],
    summary="Retrieve a webhook endpoint (secret masked)",
)
async def get_endpoint(request: Request[Any, Any, Any]) -> Response[bytes]:
    endpoint_id = request.path_params["endpoint_id"]
    return json_response(await _webhooks(request).retrieve_endpoint(endpoint_id))


@patch(
    "/v1/webhook_endpoints/{endpoint_id:str}",
    tags=["webhooks"],
    summary="Update url, events, description or enabled",
)
async def update_endpoint(request: Request[Any, Any, Any]) -> Response[bytes]:
    endpoint_id = request.path_params["endpoint_id"]
    body = await json_body(request)
    return json_response(
        await _webhooks(request).update_endpoint(endpoint_id, body, actor(request))
    )


@delete(
    "/v1/webhook_endpoints/{endpoint_id:str}",
    tags=["webhooks"],
    status_code=200,
    summary="Delete a webhook endpoint (its pending deliveries are dropped)",
)
async def delete_endpoint(request: Request[Any, Any, Any]) -> Response[bytes]:
    endpoint_id = request.path_params["endpoint_id"]
    return json_response(await _webhooks(request).delete_endpoint(endpoint_id, actor(request)))


@post(
    "/v1/webhook_endpoints/{endpoint_id:str}/rotate_secret",
    tags=["webhooks"],
    status_code=200,
    summary="Rotate the signing secret (the old one signs too for grace_period_s, default 24 h)",
)
async def rotate_secret(request: Request[Any, Any, Any]) -> Response[bytes]:
    endpoint_id = request.path_params["endpoint_id"]
    body = await json_body(request, empty_ok=True)
    return json_response(await _webhooks(request).rotate_secret(endpoint_id, body, actor(request)))


@get(
    "/v1/events",
    tags=["webhooks"],
    summary="List events, newest first (filters: type, customer_id, since, until)",
)
async def list_events(request: Request[Any, Any, Any]) -> Response[bytes]:
    params = query(
        request, "limit", "starting_after", "type", "customer_id", "customer", "since", "until"
    )
    result = await _webhooks(request).list_events(params)
    return json_response(result.to_api("/v1/events"))


@get(
    "/v1/events/{event_id:str}",
    tags=["webhooks"],
    summary="Retrieve an event with its webhook deliveries and their attempts",
)
async def get_event(request: Request[Any, Any, Any]) -> Response[bytes]:
    event_id = request.path_params["event_id"]
    return json_response(await _webhooks(request).retrieve_event(event_id))


@post(
    "/v1/events/{event_id:str}/retry",
    tags=["webhooks"],
    status_code=200,
    summary="Send an event again now, to every subscribed endpoint or to one (endpoint_id)",
)
async def retry_event(request: Request[Any, Any, Any]) -> Response[bytes]:
    event_id = request.path_params["event_id"]
    body = await json_body(request, empty_ok=True)
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    unknown = sorted(set(body) - {"endpoint_id"})
    if unknown:
        raise InvalidRequest(f"Unknown parameter: {unknown[0]}.", param=unknown[0])
    endpoint_id = body.get("endpoint_id")
    if endpoint_id is not None and (not isinstance(endpoint_id, str) or "\x00" in endpoint_id):
        raise InvalidRequest("endpoint_id must be a webhook endpoint id.", param="endpoint_id")
    return json_response(await _webhooks(request).retry_event(event_id, endpoint_id))


@get(
    "/v1/webhook_deliveries",
    tags=["webhooks"],
    summary="List webhook deliveries, newest first (filters: endpoint_id, status)",
)
async def list_deliveries(request: Request[Any, Any, Any]) -> Response[bytes]:
    params = query(request, "limit", "starting_after", "endpoint_id", "status")
    result = await _webhooks(request).deliveries_page(params)
    return json_response(result.to_api("/v1/webhook_deliveries"))


@post(
    "/v1/webhook_deliveries/{delivery_id:str}/retry",
    tags=["webhooks"],
    status_code=200,
    summary="Send one delivery again now",
)
async def retry_delivery(request: Request[Any, Any, Any]) -> Response[bytes]:
    delivery_id = request.path_params["delivery_id"]
    return json_response(await _webhooks(request).retry_delivery(delivery_id))


ROUTES = [
    create_endpoint,
    list_endpoints,
    get_endpoint,
    update_endpoint,
    delete_endpoint,
    rotate_secret,
    list_events,
    get_event,
    retry_event,
    list_deliveries,
    retry_delivery,
]
