"""Customers and wallets (admin key)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, delete, get, patch, post

from gateway.api.common import json_body, json_response, page, query
from gateway.jsoncodec import encode
from gateway.services.validation import limit as parse_limit


def _services(request: Request[Any, Any, Any]) -> Any:
    return request.app.state.services


@post("/v1/customers", tags=["customers"], summary="Create a customer", status_code=201)
async def create_customer(request: Request[Any, Any, Any]) -> Response[bytes]:
    services = _services(request)
    body = await json_body(request)
    raw = await request.body()
    key = request.headers.get("idempotency-key")
    created: list[dict[str, Any]] = []

    def operation() -> tuple[int, bytes]:
        customer = services.customers.create_sync(body)
        created.append(customer)
        return 201, encode(customer)

    result = await services.idempotency.run(key, "customers.create", raw, operation)
    if created:
        services.bus.publish("customer.changed", customer_id=created[0]["id"])
        await services.customers.run_created_hooks(created[0])
    headers = {"Idempotent-Replayed": "true"} if result.replayed else None
    return Response(
        content=result.body,
        status_code=result.status,
        media_type="application/json",
        headers=headers,
    )


@get("/v1/customers", tags=["customers"], summary="List customers (newest first)")
async def list_customers(request: Request[Any, Any, Any]) -> Response[bytes]:
    params = query(
        request, "limit", "starting_after", "ending_before", "status", "external_id", "search", "q"
    )
    result = await _services(request).customers.list(params)
    return json_response(page(result.data, result.has_more, "/v1/customers"))


@get("/v1/customers/{customer_ref:str}", tags=["customers"], summary="Retrieve a customer")
async def get_customer(request: Request[Any, Any, Any]) -> Response[bytes]:
    customer_ref = request.path_params["customer_ref"]
    return json_response(await _services(request).customers.retrieve(customer_ref))


@patch("/v1/customers/{customer_ref:str}", tags=["customers"], summary="Update a customer")
async def update_customer(request: Request[Any, Any, Any]) -> Response[bytes]:
    customer_ref = request.path_params["customer_ref"]
    body = await json_body(request)
    return json_response(await _services(request).customers.update(customer_ref, body))


@delete(
    "/v1/customers/{customer_ref:str}",
    tags=["customers"],
    status_code=200,
    summary="Archive a customer (its ledger and usage stay)",
)
async def archive_customer(request: Request[Any, Any, Any]) -> Response[bytes]:
    customer_ref = request.path_params["customer_ref"]
    return json_response(await _services(request).customers.archive(customer_ref))


@post(
    "/v1/customers/{customer_ref:str}/wallet/topup",
    tags=["wallets"],
    status_code=200,
    summary="Top up a prepaid wallet (honours Idempotency-Key)",
)
async def topup_wallet(request: Request[Any, Any, Any]) -> Response[bytes]:
    customer_ref = request.path_params["customer_ref"]
    body = await json_body(request)
    result = await _services(request).wallets.topup(
        customer_ref,
        body,
        idempotency_key=request.headers.get("idempotency-key"),
        raw_body=await request.body(),
    )
    headers = {"Idempotent-Replayed": "true"} if result.replayed else None
    return Response(
        content=result.body,
        status_code=result.status,
        media_type="application/json",
        headers=headers,
    )


@get(
    "/v1/customers/{customer_ref:str}/wallet",
    tags=["wallets"],
    summary="Wallet balance and transaction history",
)
async def get_wallet(request: Request[Any, Any, Any]) -> Response[bytes]:
    customer_ref = request.path_params["customer_ref"]
    n = parse_limit(request.query_params.get("limit"), default=100, maximum=1000)
    return json_response(await _services(request).wallets.retrieve(customer_ref, n))


ROUTES = [
    create_customer,
    list_customers,
    get_customer,
    update_customer,
    archive_customer,
    topup_wallet,
    get_wallet,
]
