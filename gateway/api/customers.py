"""Customers and wallets (admin key)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, delete, get, patch, post

from gateway.api.common import actor, json_body, json_response, query, services, stored_response
from gateway.api.usage import csv_stream, wants_csv
from gateway.services.validation import limit as parse_limit


@post(
    "/v1/customers",
    tags=["customers"],
    summary="Create a customer",
    status_code=201,
    opt={"scope": "billing"},
)
async def create_customer(request: Request[Any, Any, Any]) -> Response[bytes]:
    body = await json_body(request)
    result = await services(request).customers.create_idempotent(
        body,
        idempotency_key=request.headers.get("idempotency-key"),
        raw_body=await request.body(),
        actor=actor(request),
    )
    return stored_response(result)


@get("/v1/customers", tags=["customers"], summary="List customers (newest first)")
async def list_customers(request: Request[Any, Any, Any]) -> Response[bytes]:
    params = query(
        request, "limit", "starting_after", "ending_before", "status", "external_id", "search", "q"
    )
    result = await services(request).customers.list(params)
    return json_response(result.to_api("/v1/customers"))


@get("/v1/customers/{customer_ref:str}", tags=["customers"], summary="Retrieve a customer")
async def get_customer(request: Request[Any, Any, Any]) -> Response[bytes]:
    customer_ref = request.path_params["customer_ref"]
    return json_response(await services(request).customers.retrieve(customer_ref))


@patch(
    "/v1/customers/{customer_ref:str}",
    tags=["customers"],
    summary="Update a customer",
    opt={"scope": "billing"},
)
async def update_customer(request: Request[Any, Any, Any]) -> Response[bytes]:
    customer_ref = request.path_params["customer_ref"]
    body = await json_body(request)
    out = await services(request).customers.update(customer_ref, body, actor(request))
    return json_response(out)


@delete(
    "/v1/customers/{customer_ref:str}",
    tags=["customers"],
    status_code=200,
    summary="Archive a customer (its ledger and usage stay)",
    opt={"scope": "billing"},
)
async def archive_customer(request: Request[Any, Any, Any]) -> Response[bytes]:
    customer_ref = request.path_params["customer_ref"]
    return json_response(await services(request).customers.archive(customer_ref, actor(request)))


@post(
    "/v1/customers/{customer_ref:str}/wallet/topup",
    tags=["wallets"],
    status_code=200,
    summary="Top up a prepaid wallet (honours Idempotency-Key)",
    opt={"scope": "billing"},
)
async def topup_wallet(request: Request[Any, Any, Any]) -> Response[bytes]:
    customer_ref = request.path_params["customer_ref"]
    body = await json_body(request)
    result = await services(request).wallets.topup(
        customer_ref,
        body,
        idempotency_key=request.headers.get("idempotency-key"),
        raw_body=await request.body(),
        actor=actor(request),
    )
    return stored_response(result)


@get(
    "/v1/customers/{customer_ref:str}/wallet",
    tags=["wallets"],
    summary="Wallet balance and transaction history",
)
async def get_wallet(request: Request[Any, Any, Any]) -> Response[bytes]:
    customer_ref = request.path_params["customer_ref"]
    n = parse_limit(request.query_params.get("limit"), default=100, maximum=1000)
    return json_response(await services(request).wallets.retrieve(customer_ref, n))


@get(
    "/v1/customers/{customer_ref:str}/statement",
    tags=["statements"],
    summary="A month's statement: balances, top-ups, usage by model and day (CSV too)",
)
async def get_statement(request: Request[Any, Any, Any]) -> Response[Any]:
    customer_ref = request.path_params["customer_ref"]
    month = request.query_params.get("month")
    statements = services(request).statements
    if wants_csv(request):
        lines = await statements.csv(customer_ref, month)
        return csv_stream(lines, "statement.csv")
    return json_response(await statements.statement(customer_ref, month))


ROUTES = [
    create_customer,
    list_customers,
    get_customer,
    update_customer,
    archive_customer,
    topup_wallet,
    get_wallet,
    get_statement,
]
