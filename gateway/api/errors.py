"""The one mapping from exceptions to OpenAI's error envelope. No traceback leaves the server."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException

from gateway.api.common import json_response
from gateway.errors import ApiError, InternalError, InvalidRequest, MethodNotAllowed, NotFound
from gateway.errors import PayloadTooLarge as PayloadTooLargeError
from gateway.ids import new_id

log = logging.getLogger("ringside.api")


def api_error_response(exc: ApiError, request_id: str | None = None) -> Response[bytes]:
    headers = dict(exc.headers)
    if request_id:
        headers["FC-Request-Id"] = request_id
    return json_response(exc.body(), status=exc.status, headers=headers)


def handle_api_error(request: Request[Any, Any, Any], exc: ApiError) -> Response[bytes]:
    return api_error_response(exc)


def handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    err: ApiError
    if status == 404:
        err = NotFound(f"Unknown route: {request.method} {request.url.path}.")
    elif status == 405:
        err = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}.")
    elif status == 413:
        err = PayloadTooLargeError("The request body is larger than this server accepts.")
    elif 400 <= status < 500:
        err = InvalidRequest(_safe_detail(exc), status=status)
    else:
        return _internal(request, exc)
    headers = {k: v for k, v in (exc.headers or {}).items() if k.lower() == "allow"}
    err.headers.update(headers)
    return api_error_response(err)


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    return _internal(request, exc)


def internal_error(method: str, path: str, exc: BaseException) -> InternalError:
    """An unexpected exception: logged in full under a reference; the client gets only
    the reference."""
    ref = new_id("err")
    log.error("unhandled error %s on %s %s", ref, method, path, exc_info=exc)
    return InternalError(f"Something went wrong inside Ringside (reference {ref}).", request_id=ref)


def _internal(request: Request[Any, Any, Any], exc: BaseException) -> Response[bytes]:
    return api_error_response(internal_error(request.method, request.url.path, exc))


def _safe_detail(exc: HTTPException) -> str:
    detail = str(exc.detail or "")
    # Litestar's details are short messages; cap them so nothing odd is echoed back in bulk.
    return detail[:300] or "The request is invalid."


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ApiError: handle_api_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
