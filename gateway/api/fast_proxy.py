"""The proxy routes' fast path: raw ASGI for `POST` on the three metered routes.

Each proxied call pays for everything the framework does per request (routing, guards,
dependency resolution, response objects); measured, that was a large share of the event
loop's time per call (bench/RESULTS.md). These three routes take a fixed shape, so
`RingsideApp` answers them here, with the same authentication (`authenticate`), body limit,
error envelope and metering service as the Litestar handlers in `proxy.py`, which still
serve every other method on these paths and describe them in the OpenAPI document.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from litestar import Litestar

from gateway.api.auth import authenticate
from gateway.api.errors import internal_error
from gateway.container import Services
from gateway.errors import ApiError, InvalidRequest, PayloadTooLarge
from gateway.jsoncodec import encode
from gateway.metering import Endpoint, MeteredJson, MeteredStream

log = logging.getLogger("ringside.api")

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ENDPOINTS: dict[str, Endpoint] = {
    "/v1/chat/completions": "chat",
    "/v1/embeddings": "embeddings",
    "/v1/messages": "messages",
}
_JSON = [(b"content-type", b"application/json")]
_SSE = [(b"content-type", b"text/event-stream")]


def one_customer(values: list[bytes]) -> str | None:
    """The `FC-Customer` header's value. Repeated headers may arrive as such or joined with
    "," (by a proxy, or by the framework's view); external ids never contain ",", so either
    form names two customers: refused."""
    if len(values) > 1 or (values and b"," in values[0]):
        raise InvalidRequest(
            "Send exactly one FC-Customer header: a call is billed to one customer.",
            param="FC-Customer",
        )
    return values[0].decode("latin-1") if values else None


class _Disconnected(Exception):
    """The client went away before its request body arrived."""


def _headers(extra: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]


async def _send_json(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *_JSON,
                (b"content-length", str(len(body)).encode()),
                *_headers(headers),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _send_stream(send: Send, result: MeteredStream) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [*_SSE, *_headers(result.headers)],
        }
    )
    async for chunk in result.chunks:  # settles in its own task, whatever the client does
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


class RingsideApp(Litestar):
    """The Litestar app, with the metered routes' `POST` answered by the fast path."""

    services: Services
    max_body_bytes: int

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = ENDPOINTS.get(scope["path"])
            if endpoint is not None:
                await self._proxy(endpoint, scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def _proxy(
        self, endpoint: Endpoint, scope: MutableMapping[str, Any], receive: Receive, send: Send
    ) -> None:
        try:
            result = await self._meter(endpoint, scope, receive)
        except _Disconnected:
            return
        except ApiError as err:
            await _send_json(send, err.status, encode(err.body()), err.headers)
            return
        except Exception as exc:
            internal = internal_error("POST", scope["path"], exc)
            await _send_json(send, internal.status, encode(internal.body()), internal.headers)
            return
        if isinstance(result, MeteredJson):
            await _send_json(send, result.status, result.body, result.headers)
        else:
            await _send_stream(send, result)

    async def _meter(
        self, endpoint: Endpoint, scope: MutableMapping[str, Any], receive: Receive
    ) -> MeteredJson | MeteredStream:
        authorization = x_api_key = None
        customers: list[bytes] = []
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                raise PayloadTooLarge("The request body is larger than this server accepts.")
            if key == b"authorization":
                authorization = value.decode("latin-1")
            elif key == b"x-api-key":
                x_api_key = value.decode("latin-1")
            elif key == b"fc-customer":
                customers.append(value)
        principal = await authenticate(self.services.keys, authorization, x_api_key, "proxy")
        body = await self._body(receive)
        return await self.services.metering.call(
            endpoint, body, one_customer(customers), principal.rate_subject
        )

    async def _body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise PayloadTooLarge("The request body is larger than this server accepts.")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
