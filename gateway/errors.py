"""One exception type per API error code, mapped once to OpenAI's error envelope."""

from __future__ import annotations

from typing import Any, ClassVar


class ApiError(Exception):
    """Subclasses set the defaults; `status` and `code` may also be given per instance
    (an upstream's own 4xx is passed on with its status and code)."""

    status: int = 400
    type: ClassVar[str] = "invalid_request_error"
    code: str = "invalid_request"
    default_message: ClassVar[str] = "The request is invalid."

    def __init__(
        self,
        message: str | None = None,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        status: int | None = None,
        code: str | None = None,
        **extra: Any,
    ) -> None:
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.message = message or self.default_message
        self.param = param
        self.headers = headers or {}
        self.extra = extra
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {
            "type": self.type,
            "code": self.code,
            "message": self.message,
            "param": self.param,
        }
        err.update(self.extra)
        return {"error": err}


# ------------------------------------------------------------------ 400
class InvalidRequest(ApiError):
    code = "invalid_request"


class InvalidJson(ApiError):
    code = "invalid_json"
    default_message = "The request body is not valid JSON."


class InvalidAmount(ApiError):
    code = "invalid_amount"


class CustomerRequired(ApiError):
    code = "customer_required"
    default_message = "Every call must name the paying customer in the FC-Customer header."


class ModelPriceUnknown(ApiError):
    code = "model_price_unknown"


class ModelNotFound(ApiError):
    status = 404
    code = "model_not_found"


class InvalidModel(ApiError):
    code = "invalid_model"


# ------------------------------------------------------------------ 401/403
class AuthenticationRequired(ApiError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"
    default_message = "Missing or invalid API key. Send 'Authorization: Bearer <key>'."


class ApiKeyExpired(AuthenticationRequired):
    code = "api_key_expired"


class InsufficientPermissions(ApiError):
    status = 403
    type = "permission_error"
    code = "insufficient_permissions"
    default_message = "This key is not allowed on this route."


class CustomerSuspended(ApiError):
    status = 403
    type = "permission_error"
    code = "customer_suspended"


class CustomerArchived(ApiError):
    status = 403
    type = "permission_error"
    code = "customer_archived"


class ModelNotAllowed(ApiError):
    status = 403
    type = "permission_error"
    code = "model_not_allowed"


# ------------------------------------------------------------------ 402
class PaymentRequired(ApiError):
    status = 402
    type = "insufficient_quota"

    def __init__(self, message: str | None = None, **kw: Any) -> None:
        headers = kw.pop("headers", None) or {}
        headers.setdefault("x-should-retry", "false")
        super().__init__(message, headers=headers, **kw)


class CustomerBudgetExceeded(PaymentRequired):
    code = "customer_budget_exceeded"


class CustomerWalletEmpty(PaymentRequired):
    code = "customer_wallet_empty"


# ------------------------------------------------------------------ 404/405/409/413
class NotFound(ApiError):
    status = 404
    code = "not_found"
    default_message = "No such resource."


class CustomerNotFound(NotFound):
    code = "customer_not_found"


class PlanNotFound(NotFound):
    code = "plan_not_found"


class MethodNotAllowed(ApiError):
    status = 405
    code = "method_not_allowed"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class CustomerExists(Conflict):
    code = "customer_exists"


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"
    default_message = "This Idempotency-Key was already used with a different request body."


class IdempotencyKeyInProgress(Conflict):
    code = "idempotency_key_in_progress"
    default_message = "A request with this Idempotency-Key is still being processed."


class PayloadTooLarge(ApiError):
    status = 413
    code = "request_too_large"


class UnsupportedMediaType(ApiError):
    status = 415
    code = "unsupported_media_type"


class PlanInUse(Conflict):
    code = "plan_in_use"


class PlanExists(Conflict):
    code = "plan_exists"


# ------------------------------------------------------------------ 429
class RateLimited(ApiError):
    """A rate limit of Ringside's own refused the call; nothing was forwarded or charged."""

    status = 429
    type = "rate_limit_error"


class CustomerRateLimited(RateLimited):
    code = "customer_rate_limited"


class KeyRateLimited(RateLimited):
    code = "key_rate_limited"


# ------------------------------------------------------------------ upstream / server
class UpstreamRateLimited(ApiError):
    status = 429
    type = "rate_limit_error"
    code = "upstream_rate_limited"


class UpstreamRefused(ApiError):
    """The provider refused the request as invalid; its status and code are passed on."""

    code = "upstream_invalid_request"


class UpstreamError(ApiError):
    status = 502
    type = "api_error"
    code = "upstream_error"


class UpstreamAuthFailed(ApiError):
    """The provider refused Ringside's own credentials: an operator problem, not retriable."""

    status = 502
    type = "api_error"
    code = "upstream_auth_failed"


class UpstreamTimeout(ApiError):
    status = 504
    type = "api_error"
    code = "upstream_timeout"


class LedgerUnavailable(ApiError):
    status = 503
    type = "api_error"
    code = "ledger_unavailable"
    default_message = (
        "The ledger cannot take the reservation right now; the call was not forwarded."
    )

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("Retry-After", "1")


class InternalError(ApiError):
    status = 500
    type = "api_error"
    code = "internal_error"
    default_message = "Something went wrong inside Ringside."
