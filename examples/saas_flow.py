"""Signup -> metered AI call -> nightly usage report: the whole integration in one file.

Run it against a local gateway (the mock provider needs no provider key):

    RINGSIDE_ADMIN_KEY=dev-admin-key-0123456789 ringside serve &
    RINGSIDE_API_KEY=dev-admin-key-0123456789 python examples/saas_flow.py

Environment: RINGSIDE_BASE_URL (default http://127.0.0.1:8787), RINGSIDE_API_KEY (the admin
key: this script also creates customers), RINGSIDE_MODEL (default fc:mock/mock-fast; try
fc:openai/gpt-4o-mini once the gateway has OPENAI_API_KEY).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from gateway.client import CustomerExists, PaymentRequired, Ringside, RingsideObject

MODEL = os.environ.get("RINGSIDE_MODEL", "fc:mock/mock-fast")


@dataclass
class User:
    """Your application's user, as your own database has it."""

    id: str
    email: str


def on_signup(client: Ringside, user: User) -> RingsideObject:
    """Give every new user a Ringside customer with a monthly cost cap."""
    try:
        return client.customers.create(
            external_id=user.id,  # your id: calls may name the customer by it
            name=user.email,
            email=user.email,
            budget_usd=Decimal("25.00"),  # caps what this user may cost you per month
            metadata={"plan": "pro"},
        )
    except CustomerExists:
        return client.customers.retrieve(user.id)  # signup retried: same customer


def summarize(client: Ringside, user: User, text: str) -> str:
    """A paid AI feature: the call is metered and capped per customer."""
    try:
        resp = client.chat.completions.create(
            model=MODEL,
            messages=[
                {"role": "system", "content": "Summarize in one sentence."},
                {"role": "user", "content": text},
            ],
            max_tokens=200,
            extra_headers={"FC-Customer": user.id},
        )
    except PaymentRequired as exc:
        return f"(AI is paused for this account: {exc.code})"
    print(
        f"  request {resp.request_id}: cost ${resp.cost_usd}, price ${resp.price_usd}, "
        f"budget left ${resp.budget_remaining_usd}"
    )
    return resp.choices[0].message.content or ""


def nightly_report(client: Ringside, since: str) -> list[tuple[str, int]]:
    """What each active customer used since `since`, in whole cents of price.

    Push these to your billing system; with Stripe, as meter events (docs/client.md), or
    let Ringside's own Stripe sync do it (docs/stripe.md).
    """
    lines = []
    for customer in client.customers.list(status="active", limit=100):  # walks every page
        usage = client.usage.retrieve(customer_id=customer.id, since=since)
        if usage.requests == 0:
            continue
        cents = int(usage.total_price_usd * 100)  # Decimal: exact, then floored to cents
        lines.append((customer.external_id, cents))
        print(
            f"  {customer.external_id}: {usage.requests} requests, "
            f"cost ${usage.total_cost_usd}, price ${usage.total_price_usd}, "
            f"margin ${usage.margin_usd} -> {cents} cents"
        )
    return lines


def main() -> None:
    with Ringside() as client:
        user = User(id=f"user_{uuid.uuid4().hex[:8]}", email="ada@example.com")
        customer = on_signup(client, user)
        print(f"signed up {user.email} as {customer.id} (budget ${customer.monthly_budget_usd})")

        for text in ("Ringside meters every call.", "Budgets hold under concurrency."):
            print("summary:", summarize(client, user, text))

        month_start = datetime.now(UTC).date().replace(day=1)
        print(f"usage since {month_start}:")
        nightly_report(client, since=month_start.isoformat())


if __name__ == "__main__":
    main()
