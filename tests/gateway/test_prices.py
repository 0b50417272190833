"""Pricing rules: catalog (genai-prices, offline), overrides, cache and reasoning tokens."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from gateway.config import load_settings
from gateway.errors import ModelPriceUnknown
from gateway.ledger import PriceBook
from gateway.tokens import TokenUsage


def book(tmp_path: Path, config: str = "") -> PriceBook:
    path = tmp_path / "c.toml"
    path.write_text(config)
    return PriceBook(load_settings(path, env={}, overrides={"data_dir": str(tmp_path)}))


def test_openai_catalog_prices_cached_prompt_tokens_at_the_cache_rate(tmp_path: Path) -> None:
    prices = book(tmp_path)
    rates = prices.rates("openai", "gpt-4o")
    # gpt-4o: $2.50 input, $1.25 cached input, $10 output per million tokens
    charge = rates.charge(TokenUsage(input_tokens=1000, cached_tokens=400, output_tokens=100), None)
    assert charge.cost_nanos == 600 * 2500 + 400 * 1250 + 100 * 10_000


def test_reasoning_tokens_are_billed_as_output(tmp_path: Path) -> None:
    prices = book(tmp_path)
    rates = prices.rates("openai", "o3-mini")
    plain = rates.charge(TokenUsage(input_tokens=10, output_tokens=100), None)
    reasoning = rates.charge(
        TokenUsage(input_tokens=10, output_tokens=100, reasoning_tokens=80), None
    )
    # reasoning tokens are part of completion_tokens: the same output, the same price
    assert plain == reasoning


def test_anthropic_cache_reads_and_writes(tmp_path: Path) -> None:
    prices = book(tmp_path)
    rates = prices.rates("anthropic", "claude-sonnet-4-5")
    # $3 input, $0.30 cache read, $3.75 cache write (5 min), $15 output per million
    usage = TokenUsage(
        input_tokens=1000 + 2000 + 500,
        cached_tokens=2000,
        cache_write_tokens=500,
        output_tokens=100,
    )
    charge = rates.charge(usage, None)
    assert charge.cost_nanos == 1000 * 3000 + 2000 * 300 + 500 * 3750 + 100 * 15_000


def test_override_beats_catalog_and_markups_apply(tmp_path: Path) -> None:
    prices = book(
        tmp_path,
        '[billing]\nmarkup = 1.5\n[prices."openai/gpt-4o"]\n'
        "input_usd_per_mtok = 1\noutput_usd_per_mtok = 2\n",
    )
    rates = prices.rates("openai", "gpt-4o")
    charge = rates.charge(TokenUsage(input_tokens=1_000_000, output_tokens=0), None)
    assert (charge.cost_nanos, charge.price_nanos, charge.margin_nanos) == (
        1_000_000_000,
        1_500_000_000,
        500_000_000,
    )
    with_customer = rates.charge(TokenUsage(input_tokens=1_000_000), Decimal("2"))
    assert with_customer.price_nanos == 2_000_000_000


def test_sub_nano_amounts_round_half_even_once(tmp_path: Path) -> None:
    prices = book(
        tmp_path, '[prices."local/m"]\ninput_usd_per_mtok = 0.0000005\noutput_usd_per_mtok = 0\n'
    )
    rates = prices.rates("local", "m")
    # 3 tokens x 0.0005 nanos = 0.0015 nanos -> 0 (never negative, never a float)
    assert rates.charge(TokenUsage(input_tokens=3), None).cost_nanos == 0
    assert rates.charge(TokenUsage(input_tokens=3000), None).cost_nanos == 2


def test_unknown_model_is_refused_never_free(tmp_path: Path) -> None:
    prices = book(tmp_path)
    with pytest.raises(ModelPriceUnknown):
        prices.rates("openai", "gpt-nonexistent-9")
    with pytest.raises(ModelPriceUnknown):
        prices.rates("mock", "not-a-mock-model")


def test_hold_bounds_use_the_most_expensive_tier(tmp_path: Path) -> None:
    prices = book(tmp_path)
    rates = prices.rates("anthropic", "claude-sonnet-4-5")
    # above 200k input tokens Sonnet 4.5 costs $6 input (1h cache writes $12), $22.50 output
    assert rates.bound_input_nanos == Decimal(12_000)
    assert rates.bound_output_nanos == Decimal(22_500)
    big = TokenUsage(input_tokens=300_000, output_tokens=1000)
    assert rates.charge(big, None).cost_nanos <= rates.bound_nanos(300_000, 1000)
