"""Standard Webhooks signing (https://www.standardwebhooks.com), via the reference package.

Headers: `webhook-id` (the event id, the same on every retry), `webhook-timestamp` (unix
seconds of this attempt) and `webhook-signature` (`v1,<base64 HMAC-SHA256>`; during a
secret rotation's grace period, one signature per valid secret, space-separated, which
receivers holding either secret accept).
"""

from __future__ import annotations

import base64
import secrets as _secrets
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the spec allows 24-64; 32 matches the HMAC-SHA256 block strength

__all__ = [
    "SECRET_PREFIX",
    "WebhookVerificationError",
    "mask_secret",
    "new_secret",
    "sign",
    "signed_headers",
    "verify",
]


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(SECRET_BYTES)).decode()


def mask_secret(secret: str) -> str:
    """Enough to tell two secrets apart in a listing, never enough to sign with."""
    return f"{SECRET_PREFIX}****{secret[-4:]}"


def sign(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    when = datetime.fromtimestamp(timestamp, UTC)
    text = body.decode("utf-8")
    return " ".join(Webhook(s).sign(msg_id, when, text) for s in secrets)


def signed_headers(
    secrets: Sequence[str], msg_id: str, body: bytes, *, timestamp: int | None = None
) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secrets, msg_id, ts, body),
    }


def verify(secret: str, body: bytes, headers: Mapping[str, str]) -> Any:
    """The receiver's check: signature and a 5-minute timestamp tolerance. Raises
    WebhookVerificationError; returns the parsed JSON payload."""
    return Webhook(secret).verify(body, dict(headers))
