"""API errors of the Stripe sync, one type per code (mapped to the OpenAI envelope once)."""

from __future__ import annotations

from gateway.errors import ApiError, Conflict, NotFound


class StripeNotConfigured(ApiError):
    code = "stripe_not_configured"
    default_message = (
        "Stripe is not configured: set the API key in the environment variable named by "
        "[stripe] api_key_env (default STRIPE_API_KEY)."
    )


class StripeSyncInProgress(Conflict):
    code = "stripe_sync_in_progress"
    default_message = "A Stripe sync is already running (on this or another instance)."


class StripeSyncRunNotFound(NotFound):
    code = "stripe_sync_run_not_found"


class StripeBatchNotFound(NotFound):
    code = "stripe_batch_not_found"


class StripeBatchNotResolvable(Conflict):
    code = "stripe_batch_not_resolvable"
