"""The OpenAI-compatible proxy routes: parse HTTP, call the metering service, shape the answer.

Everything about money (reserve, forward, settle) lives in `gateway.metering`. `POST` on the
three metered routes is answered by the fast path (`fast_proxy.RingsideApp`); these handlers
describe the routes in the OpenAPI document and serve any app mounted without it.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.response import Stream

from gateway.api.common import JSON, json_response, services
from gateway.api.fast_proxy import one_customer
from gateway.metering import Endpoint, MeteredJson


def _customer_header(request: Request[Any, Any, Any]) -> str | None:
    return one_customer([v for k, v in request.scope["headers"] if k == b"fc-customer"])


async def _proxy(request: Request[Any, Any, Any], endpoint: Endpoint) -> Response[Any]:
    principal = getattr(request.state, "principal", None)
    result = await services(request).metering.call(
        endpoint,
        await request.body(),
        _customer_header(request),
        principal.rate_subject if principal is not None else None,
    )
    if isinstance(result, MeteredJson):
        return Response(
            content=result.body,
            status_code=result.status,
            media_type=JSON,
            headers=result.headers,
        )
    return Stream(result.chunks, media_type="text/event-stream", headers=result.headers)


@post(
    "/v1/chat/completions",
    opt={"scope": "proxy"},
    tags=["proxy"],
    status_code=200,
    summary="OpenAI-compatible chat completions (JSON or SSE stream)",
)
async def chat_completions(request: Request[Any, Any, Any]) -> Response[Any]:
    return await _proxy(request, "chat")


@post(
    "/v1/embeddings",
    opt={"scope": "proxy"},
    tags=["proxy"],
    status_code=200,
    summary="OpenAI-compatible embeddings",
)
async def embeddings(request: Request[Any, Any, Any]) -> Response[Any]:
    return await _proxy(request, "embeddings")


@post(
    "/v1/messages",
    opt={"scope": "proxy"},
    tags=["proxy"],
    status_code=200,
    summary="Anthropic Messages API passthrough (for the anthropic SDK), metered",
)
async def anthropic_messages(request: Request[Any, Any, Any]) -> Response[Any]:
    return await _proxy(request, "messages")


@get("/v1/models", opt={"scope": "proxy"}, tags=["proxy"], summary="Routable models")
async def list_models(request: Request[Any, Any, Any]) -> Response[bytes]:
    """With `FC-Customer`, only the models that customer's allow-list lets it call."""
    models = await services(request).metering.models_for(_customer_header(request))
    return json_response({"object": "list", "data": models})


ROUTES = [chat_completions, embeddings, anthropic_messages, list_models]
