"""Plans (admin key): named defaults for customers; a customer's own values win."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, delete, get, patch, post

from gateway.api.common import actor, json_body, json_response, query, services


@post(
    "/v1/plans", tags=["plans"], summary="Create a plan", status_code=201, opt={"scope": "billing"}
)
async def create_plan(request: Request[Any, Any, Any]) -> Response[bytes]:
    body = await json_body(request)
    return json_response(await services(request).plans.create(body, actor(request)), status=201)


@get("/v1/plans", tags=["plans"], summary="List plans (newest first), with customer counts")
async def list_plans(request: Request[Any, Any, Any]) -> Response[bytes]:
    params = query(request, "limit", "starting_after", "ending_before")
    result = await services(request).plans.list(params)
    return json_response(result.to_api("/v1/plans"))


@get("/v1/plans/{plan_ref:str}", tags=["plans"], summary="Retrieve a plan (id or external id)")
async def get_plan(request: Request[Any, Any, Any]) -> Response[bytes]:
    return json_response(await services(request).plans.retrieve(request.path_params["plan_ref"]))


@patch(
    "/v1/plans/{plan_ref:str}",
    tags=["plans"],
    summary="Update a plan (applies at once to its customers; `limits` merges)",
    opt={"scope": "billing"},
)
async def update_plan(request: Request[Any, Any, Any]) -> Response[bytes]:
    body = await json_body(request)
    out = await services(request).plans.update(
        request.path_params["plan_ref"], body, actor(request)
    )
    return json_response(out)


@delete(
    "/v1/plans/{plan_ref:str}",
    tags=["plans"],
    status_code=200,
    summary="Delete an unused plan (409 plan_in_use while a customer is on it)",
    opt={"scope": "billing"},
)
async def delete_plan(request: Request[Any, Any, Any]) -> Response[bytes]:
    out = await services(request).plans.delete(request.path_params["plan_ref"], actor(request))
    return json_response(out)


ROUTES = [create_plan, list_plans, get_plan, update_plan, delete_plan]
