"""Request/response plumbing shared by every controller."""

from __future__ import annotations

from typing import Any, Protocol

from litestar import Request, Response
from litestar.exceptions import InternalServerException

from gateway.audit import Actor
from gateway.container import Services
from gateway.errors import InvalidJson, InvalidRequest
from gateway.jsoncodec import decode, decode_lenient, encode

JSON = "application/json"


def services(request: Request[Any, Any, Any]) -> Services:
    """The gateway's services, put on `app.state` once by `create_app`."""
    found: Services = request.app.state.services
    return found


def actor(request: Request[Any, Any, Any]) -> Actor:
    """Who is acting, for the audit log (set by the auth guard)."""
    found: Actor = request.state.actor
    return found


async def json_body(request: Request[Any, Any, Any], *, empty_ok: bool = False) -> Any:
    try:
        raw = await request.body()
    except InternalServerException as exc:
        if "disconnected" not in str(exc.detail):
            raise
        # The client went away (or stalled past [server] body_timeout_s) mid-body: nobody
        # reads this answer, and it is not a bug to log with a traceback.
        raise InvalidRequest("The client disconnected before the body arrived.") from None
    if not raw.strip():
        if empty_ok:
            return {}
        raise InvalidJson("The request body is empty; send a JSON object.")
    return decode_lenient(raw)


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response[bytes]:
    return Response(content=encode(data), status_code=status, media_type=JSON, headers=headers)


class StoredAnswer(Protocol):
    """An idempotent operation's stored answer (the ledger's `StoredResponse`)."""

    @property
    def status(self) -> int: ...
    @property
    def body(self) -> bytes: ...
    @property
    def replayed(self) -> bool: ...


def stored_response(result: StoredAnswer) -> Response[bytes]:
    """An idempotent operation's answer, marked when it was replayed."""
    headers = {"Idempotent-Replayed": "true"} if result.replayed else None
    return Response(
        content=result.body, status_code=result.status, media_type=JSON, headers=headers
    )


def query(request: Request[Any, Any, Any], *names: str) -> dict[str, str | None]:
    params = request.query_params
    return {n: params.get(n) for n in names}


__all__ = [
    "JSON",
    "actor",
    "decode",
    "encode",
    "json_body",
    "json_response",
    "query",
    "services",
    "stored_response",
]
