"""Keep the official `openai` SDK: point its base_url at Ringside and name the customer.

    RINGSIDE_API_KEY=<admin key> python examples/openai_sdk.py

The Ringside client is used once, to create the customer and an app key (what a backend
should hold: it can call models but not manage customers). Everything after that is plain
openai SDK code. Environment: RINGSIDE_BASE_URL, RINGSIDE_API_KEY, RINGSIDE_MODEL.
"""

from __future__ import annotations

import os
import uuid
from decimal import Decimal

import openai

from gateway.client import Ringside

BASE_URL = os.environ.get("RINGSIDE_BASE_URL", "http://127.0.0.1:8787")
MODEL = os.environ.get("RINGSIDE_MODEL", "fc:mock/mock-fast")


def main() -> None:
    with Ringside(BASE_URL) as admin:
        customer = admin.customers.create(
            external_id=f"org_{uuid.uuid4().hex[:8]}", name="Acme Inc", budget_usd=10
        )
        app_key = admin.keys.create("backend").key  # shown once: store it as a secret

    # One SDK client per customer (or pass extra_headers={"FC-Customer": ...} per call).
    ai = openai.OpenAI(
        base_url=f"{BASE_URL}/v1",
        api_key=app_key,
        default_headers={"FC-Customer": customer.id},
    )

    completion = ai.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hello."}]
    )
    print("reply:", completion.choices[0].message.content)
    # Ringside adds cost_usd and price_usd to usage. The SDK parses them as floats: read
    # the FC-Cost-USD header (below) when you need the exact amount.
    print("tokens:", completion.usage.total_tokens, "cost ~", completion.usage.cost_usd)

    raw = ai.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "Again, please."}]
    )
    cost = Decimal(raw.headers["FC-Cost-USD"])
    print(f"request {raw.headers['FC-Request-Id']} cost exactly ${cost}")
    print("budget left:", raw.headers.get("FC-Budget-Remaining-USD"))

    stream = ai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Stream a sentence."}],
        stream=True,
        stream_options={"include_usage": True},  # the last chunk then carries the cost
    )
    parts = []
    for chunk in stream:
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or "")
        if chunk.usage:
            print("streamed:", "".join(parts))
            print("stream cost ~", chunk.usage.cost_usd)

    # Refusals arrive as openai.APIStatusError; Ringside's code and fields are on it.
    broke = openai.OpenAI(
        base_url=f"{BASE_URL}/v1", api_key=app_key, default_headers={"FC-Customer": "no-such"}
    )
    try:
        broke.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    except openai.NotFoundError as exc:
        print("refused:", exc.status_code, exc.code)


if __name__ == "__main__":
    main()
