"""A SaaS backend that turns Ringside's refusals into a good screen for the user.

A prepaid user with an empty wallet gets a top-up prompt instead of an error page; the
payment webhook tops the wallet up exactly once, however often it is delivered; a user
over the monthly budget is told when the limit resets.

    RINGSIDE_API_KEY=<admin key> python examples/handle_402.py

Environment: RINGSIDE_BASE_URL, RINGSIDE_API_KEY, RINGSIDE_MODEL (default fc:mock/mock-fast).
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from gateway.client import (
    APIConnectionError,
    CustomerArchived,
    CustomerBudgetExceeded,
    CustomerSuspended,
    CustomerWalletEmpty,
    InternalServerError,
    Ringside,
)

MODEL = os.environ.get("RINGSIDE_MODEL", "fc:mock/mock-fast")
LOW_BALANCE_USD = Decimal("1.00")

client = Ringside()


def next_month_start(today: date) -> date:
    return date(today.year + today.month // 12, today.month % 12 + 1, 1)


def ask(user_id: str, prompt: str) -> tuple[int, dict[str, Any]]:
    """Your HTTP handler for the AI feature: returns (status, JSON body) for the frontend."""
    try:
        resp = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": prompt}],
            extra_headers={"FC-Customer": user_id},
        )
    except CustomerWalletEmpty as exc:
        # Prepaid credits are used up: show the top-up dialog, not an error.
        return 402, {
            "error": "top_up_required",
            "message": "You are out of AI credits. Top up to keep going.",
            "balance_usd": str(exc.balance_usd),
            "needed_usd": str(exc.required_usd),
            "top_up_url": "/billing/top-up",
        }
    except CustomerBudgetExceeded as exc:
        # The monthly cap you set for this plan: offer an upgrade, say when it resets.
        return 402, {
            "error": "monthly_limit_reached",
            "message": "This month's AI allowance is used up.",
            "resets_on": next_month_start(datetime.now(UTC).date()).isoformat(),
            "upgrade_url": "/billing/plans",
            "period": exc.period,
        }
    except (CustomerSuspended, CustomerArchived):
        return 403, {"error": "account_disabled", "message": "AI is disabled for this account."}
    except (InternalServerError, APIConnectionError):
        # Provider outage or gateway unreachable: nothing was charged; the client already
        # retried what was safe to retry.
        return 503, {"error": "ai_unavailable", "message": "Please try again in a minute."}
    body: dict[str, Any] = {"reply": resp.choices[0].message.content}
    if resp.wallet_balance_usd is not None and resp.wallet_balance_usd < LOW_BALANCE_USD:
        body["notice"] = f"Only ${resp.wallet_balance_usd:.2f} of credit left."
    return 200, body


def on_payment_succeeded(payment_id: str, user_id: str, amount_usd: Decimal) -> Decimal:
    """Your payment provider's webhook. It may be delivered twice: the payment id as the
    Idempotency-Key makes the second delivery replay the first top-up, not add to it."""
    wallet = client.wallets.topup(
        user_id, amount_usd, description=f"card payment {payment_id}", idempotency_key=payment_id
    )
    return wallet.balance_usd


def main() -> None:
    user_id = f"user_{uuid.uuid4().hex[:8]}"
    client.customers.create(
        external_id=user_id,
        name="Grace",
        prepaid=True,  # pays from a wallet; starts at $0
        low_balance_threshold_usd=LOW_BALANCE_USD,  # fires the wallet.low webhook
    )

    status, body = ask(user_id, "Draft a haiku about invoices.")
    print(status, body)  # 402 top_up_required
    assert status == 402 and body["error"] == "top_up_required"

    payment_id = f"pay_{uuid.uuid4().hex[:10]}"
    print("balance after payment:", on_payment_succeeded(payment_id, user_id, Decimal("5")))
    print("after redelivery:     ", on_payment_succeeded(payment_id, user_id, Decimal("5")))

    status, body = ask(user_id, "Draft a haiku about invoices.")
    print(status, body)  # 200 with the reply
    assert status == 200

    capped = f"user_{uuid.uuid4().hex[:8]}"
    client.customers.create(external_id=capped, name="Linus", budget_usd=Decimal("0.00001"))
    status, body = ask(capped, "Hello?")
    print(status, body)  # 402 monthly_limit_reached
    assert body["error"] == "monthly_limit_reached"
    client.close()


if __name__ == "__main__":
    main()
