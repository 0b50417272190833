"""What providers report as usage: counts are read strictly, clamped, or refused as missing."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.providers.anthropic import anthropic_usage
from gateway.providers.base import MAX_TOKENS, openai_usage_to_tokens, token_count
from tests.conftest import admin


@pytest.mark.parametrize(
    ("value", "count"),
    [
        (12, 12),
        (0, 0),
        (12.0, 12),
        (10**20, MAX_TOKENS),
        (1e20, MAX_TOKENS),
        (12.5, None),
        (-3, None),
        (True, None),
        ("12", None),
        (None, None),
        (float("nan"), None),
    ],
)
def test_token_counts(value: Any, count: int | None) -> None:
    assert token_count(value) == count


def test_openai_usage_without_counts_is_missing_not_free() -> None:
    assert openai_usage_to_tokens({"total_tokens": 2010}) is None
    assert openai_usage_to_tokens({"prompt_tokens": "x", "completion_tokens": None}) is None
    u = openai_usage_to_tokens({"prompt_tokens": 10.0, "completion_tokens": 2000.0})
    assert u is not None and (u.input_tokens, u.output_tokens) == (10, 2000)
    embeddings = openai_usage_to_tokens({"prompt_tokens": 7, "total_tokens": 7})
    assert embeddings is not None and embeddings.input_tokens == 7
    huge = openai_usage_to_tokens({"prompt_tokens": 10**20, "completion_tokens": 10**20})
    assert huge is not None and huge.input_tokens == huge.output_tokens == MAX_TOKENS


def test_anthropic_usage_is_clamped_too() -> None:
    u = anthropic_usage({"input_tokens": 10**30, "output_tokens": 5.0})
    assert u.input_tokens == MAX_TOKENS and u.output_tokens == 5


async def test_a_settlement_that_fails_still_ends_the_stream(
    client: Any, gateway: Any, caplog: pytest.LogCaptureFixture
) -> None:
    cus = (
        await client.post("/v1/customers", json={"external_id": "sf", "name": "S"}, headers=admin())
    ).json()

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("settlement bug")

    gateway.ledger.settle = broken
    r = await client.post(
        "/v1/chat/completions",
        json={
            "model": "fc:mock/mock-fast",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
        },
        headers=admin({"FC-Customer": cus["id"]}),
    )
    assert r.status_code == 200
    last = r.text.strip().splitlines()[-1]
    assert last.startswith("data: ") and '"error"' in last  # ended, with an error, not hung
    assert "settling stream" in caplog.text and "settlement bug" in caplog.text
