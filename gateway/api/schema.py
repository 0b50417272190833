"""GET /schema/openapi.json: the contract (`gateway.api.contract`), any valid key."""

from __future__ import annotations

import functools
from typing import Any

from litestar import Request, Response, get

from gateway import __version__
from gateway.api.common import JSON
from gateway.api.contract import OPERATIONS, openapi_document
from gateway.jsoncodec import encode

DESCRIPTION = (
    "Self-hosted AI gateway: an OpenAI-compatible proxy with per-customer metering, "
    "budgets, wallets, plans and rate limits, webhooks and Stripe sync. Errors are "
    "OpenAI's envelope `{error: {type, code, message, param}}`; money is USD as exact JSON "
    "numbers."
)


@functools.cache
def document() -> bytes:
    return encode(openapi_document(OPERATIONS, version=__version__, description=DESCRIPTION))


@get("/schema/openapi.json", opt={"scope": "any"}, include_in_schema=False)
async def openapi_json(request: Request[Any, Any, Any]) -> Response[bytes]:
    return Response(content=document(), media_type=JSON)


ROUTES = [openapi_json]
