"""Stripe usage sync (admin key): run it now, its history, per-customer state, batches."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post

from gateway.api.common import actor, json_body, json_response, query, services
from gateway.services.validation import limit as parse_limit
from gateway.stripe_sync import StripeSyncService

TAGS = ["stripe"]


def _service(request: Request[Any, Any, Any]) -> StripeSyncService:
    return services(request).stripe


@post(
    "/v1/stripe/sync",
    tags=TAGS,
    status_code=200,
    summary="Push unsynced usage to Stripe now; answers what was pushed and what failed",
)
async def sync_now(request: Request[Any, Any, Any]) -> Response[bytes]:
    await json_body(request, empty_ok=True)  # no parameters; a malformed body is still a 400
    return json_response(await _service(request).sync_now(actor=actor(request)))


@get("/v1/stripe/sync_runs", tags=TAGS, summary="Stripe sync runs, newest first")
async def list_sync_runs(request: Request[Any, Any, Any]) -> Response[bytes]:
    params = query(request, "limit", "starting_after")
    n = parse_limit(params["limit"])
    result = await _service(request).runs_page(n, params["starting_after"])
    return json_response(result.to_api("/v1/stripe/sync_runs"))


@get("/v1/stripe/sync_runs/{run_id:str}", tags=TAGS, summary="One Stripe sync run")
async def get_sync_run(request: Request[Any, Any, Any]) -> Response[bytes]:
    return json_response(await _service(request).sync_run(request.path_params["run_id"]))


@get(
    "/v1/stripe/customers",
    tags=TAGS,
    summary="Per-customer Stripe state: last pushed period, pending amount, last error",
)
async def list_customer_states(request: Request[Any, Any, Any]) -> Response[bytes]:
    params = query(request, "limit", "starting_after")
    n = parse_limit(params["limit"])
    result = await _service(request).customer_states_page(n, params["starting_after"])
    return json_response(result.to_api("/v1/stripe/customers"))


@get(
    "/v1/stripe/customers/{customer_ref:str}",
    tags=TAGS,
    summary="One customer's Stripe state (by cus_ id or external_id)",
)
async def get_customer_state(request: Request[Any, Any, Any]) -> Response[bytes]:
    ref = request.path_params["customer_ref"]
    return json_response(await _service(request).customer_state(ref))


@get("/v1/stripe/batches", tags=TAGS, summary="Meter-event batches, newest first")
async def list_batches(request: Request[Any, Any, Any]) -> Response[bytes]:
    params = query(request, "limit", "starting_after", "customer_id", "state")
    n = parse_limit(params["limit"], default=50, maximum=500)
    result = await _service(request).batches_page(
        customer_id=params["customer_id"],
        state=params["state"],
        limit=n,
        starting_after=params["starting_after"],
    )
    return json_response(result.to_api("/v1/stripe/batches"))


@post(
    "/v1/stripe/batches/{batch_id:str}/resolve",
    tags=TAGS,
    status_code=200,
    summary='Resolve a failed or uncertain batch: {"outcome": "pushed" | "resend"}',
)
async def resolve_batch(request: Request[Any, Any, Any]) -> Response[bytes]:
    body = await json_body(request)
    batch_id = request.path_params["batch_id"]
    return json_response(await _service(request).resolve_batch(batch_id, body, actor(request)))


ROUTES = [
    sync_now,
    list_sync_runs,
    get_sync_run,
    list_customer_states,
    get_customer_state,
    list_batches,
    resolve_batch,
]
