"""API keys (admin key): create (the key is shown once; kind app, read, billing or admin),
list, revoke."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, delete, get, post

from gateway.api.common import actor, json_body, json_response, services
from gateway.services.pagination import Page


@post("/v1/keys", tags=["keys"], status_code=201, summary="Create an API key (shown once)")
async def create_key(request: Request[Any, Any, Any]) -> Response[bytes]:
    body = await json_body(request, empty_ok=True)
    out = await services(request).keys.create(body, actor(request))
    return json_response(out, status=201)


@get("/v1/keys", tags=["keys"], summary="List API keys", opt={"scope": "admin"})
async def list_keys(request: Request[Any, Any, Any]) -> Response[bytes]:
    include = request.query_params.get("include_revoked") in ("1", "true")
    keys = await services(request).keys.list(include)
    return json_response(Page(keys, has_more=False).to_api("/v1/keys"))


@delete("/v1/keys/{key_id:str}", tags=["keys"], status_code=200, summary="Revoke an API key")
async def revoke_key(request: Request[Any, Any, Any]) -> Response[bytes]:
    key_id = request.path_params["key_id"]
    return json_response(await services(request).keys.revoke(key_id, actor(request)))


ROUTES = [create_key, list_keys, revoke_key]
