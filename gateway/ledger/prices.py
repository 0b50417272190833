"""Model prices: the offline genai-prices catalog, config overrides, markups.

Everything here is integer nano-USD or Decimal. Lookups are cached per model, so the
hot path never re-parses config or re-walks the catalog.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from gateway.config import PriceOverride, Settings
from gateway.errors import ModelPriceUnknown
from gateway.tokens import TokenUsage

log = logging.getLogger("ringside.prices")

_MTOK = Decimal(1_000_000)
_NANOS = Decimal(1_000_000_000)
# USD per million tokens -> nano-USD per token is a factor of 1000.
_PER_TOKEN = _NANOS / _MTOK

# Built-in prices of the offline mock provider, so demos meter real-looking money.
MOCK_PRICES: dict[str, PriceOverride] = {
    "mock/mock-fast": PriceOverride(Decimal("0.50"), Decimal("1.50"), Decimal("0.25")),
    "mock/mock-smart": PriceOverride(Decimal("3.00"), Decimal("15.00"), Decimal("0.30")),
    "mock/mock-reasoning": PriceOverride(Decimal("1.10"), Decimal("4.40"), Decimal("0.275")),
    "mock/mock-embed": PriceOverride(Decimal("0.02"), Decimal("0")),
}

# Largest output each well-known model accepts; others use [billing] default_max_output_tokens.
KNOWN_MAX_OUTPUT: dict[str, int] = {
    "gpt-4o": 16384,
    "gpt-4o-mini": 16384,
    "gpt-4.1": 32768,
    "gpt-4.1-mini": 32768,
    "gpt-4.1-nano": 32768,
    "gpt-4-turbo": 4096,
    "gpt-3.5-turbo": 4096,
    "o1": 100000,
    "o3": 100000,
    "o3-mini": 100000,
    "o4-mini": 100000,
    "gpt-5": 128000,
    "gpt-5-mini": 128000,
    "gpt-5-nano": 128000,
    "claude-sonnet-4-5": 64000,
    "claude-sonnet-4": 64000,
    "claude-opus-4-1": 32000,
    "claude-opus-4": 32000,
    "claude-haiku-4-5": 64000,
    "claude-3-7-sonnet": 64000,
    "claude-3-5-haiku": 8192,
    "claude-3-5-sonnet": 8192,
    "claude-3-haiku": 4096,
    "mock-fast": 4096,
    "mock-smart": 8192,
    "mock-reasoning": 8192,
}


@dataclass(frozen=True)
class Charge:
    cost_nanos: int
    price_nanos: int

    @property
    def margin_nanos(self) -> int:
        return self.price_nanos - self.cost_nanos


def _max_rate(value: Any) -> Decimal:
    """The highest rate of a catalog price: a Decimal, or tiered (`base` and `tiers`)."""
    if isinstance(value, Decimal):
        return value
    base = getattr(value, "base", None)
    tiers = getattr(value, "tiers", None) or []
    rates: list[Decimal] = [r for r in (base, *(t.price for t in tiers)) if r is not None]
    return max(rates)


@dataclass(frozen=True)
class ModelRates:
    key: str  # "provider/model"
    markup: Decimal  # model-level markup (config), else the global one
    max_output_tokens: int
    # Worst-case nano-USD per token, across tiers and input kinds: what a hold must cover.
    bound_input_nanos: Decimal
    bound_output_nanos: Decimal
    override: PriceOverride | None = None
    catalog: Any = None  # genai_prices ModelPrice, for exact (tiered) costs

    def cost(self, usage: TokenUsage) -> Decimal:
        """Exact cost in nano-USD (a Decimal; callers round once)."""
        if self.override is not None:
            o = self.override
            cached = min(usage.cached_tokens, usage.input_tokens)
            writes = min(usage.cache_write_tokens, usage.input_tokens - cached)
            plain = usage.input_tokens - cached - writes
            cached_rate = o.cached_input_usd_per_mtok
            write_rate = o.cache_write_usd_per_mtok
            usd = (
                plain * o.input_usd_per_mtok
                + cached * (cached_rate if cached_rate is not None else o.input_usd_per_mtok)
                + writes * (write_rate if write_rate is not None else o.input_usd_per_mtok)
                + usage.output_tokens * o.output_usd_per_mtok
            )
            return usd * _PER_TOKEN
        from genai_prices import Usage

        calc = self.catalog.calc_price(
            Usage(
                input_tokens=usage.input_tokens,
                cache_read_tokens=usage.cached_tokens or None,
                cache_write_tokens=usage.cache_write_tokens or None,
                output_tokens=usage.output_tokens,
            )
        )
        return Decimal(calc["total_price"]) * _NANOS

    def charge(self, usage: TokenUsage, customer_markup: Decimal | None) -> Charge:
        """Cost and price in nano-USD, each rounded once (half-even) from the exact cost;
        the customer's markup wins over the model's (which defaults to the global one)."""
        from gateway.ledger.amounts import decimal_to_nanos

        exact = self.cost(usage)
        markup = customer_markup if customer_markup is not None else self.markup
        return Charge(decimal_to_nanos(exact), decimal_to_nanos(exact * markup))

    def bound_nanos(self, input_tokens: int, output_tokens: int) -> int:
        """Worst-case cost of a call with at most these tokens, rounded up."""
        exact = input_tokens * self.bound_input_nanos + output_tokens * self.bound_output_nanos
        return int(-((-exact) // 1))

    def affordable_output_tokens(self, input_tokens: int, budget_nanos: int) -> int:
        """How many output tokens the budget pays for, after the worst-case input."""
        left = Decimal(budget_nanos) - input_tokens * self.bound_input_nanos
        if left <= 0:
            return 0
        if self.bound_output_nanos <= 0:
            return self.max_output_tokens
        return int(left // self.bound_output_nanos)


class PriceBook:
    """Resolves "provider/model" to its rates once, then serves them from memory."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._cache: dict[str, ModelRates | None] = {}

    def rates(self, provider: str, model: str) -> ModelRates:
        key = f"{provider}/{model}"
        if key in self._cache:
            rates = self._cache[key]
        else:
            rates = self._cache[key] = self._resolve(provider, model)
        if rates is None:
            raise ModelPriceUnknown(
                f"No price is known for model '{key}'. Configure one under "
                f'[prices."{key}"] (input_usd_per_mtok, output_usd_per_mtok).',
                param="model",
            )
        return rates

    def known(self, provider: str, model: str) -> bool:
        try:
            self.rates(provider, model)
        except ModelPriceUnknown:
            return False
        return True

    # ------------------------------------------------------------------ resolution
    def _resolve(self, provider: str, model: str) -> ModelRates | None:
        key = f"{provider}/{model}"
        billing = self._settings.billing
        override = self._settings.prices.get(key)
        if override is None and provider == "mock":
            override = MOCK_PRICES.get(key)
        model_markup = billing.model_markups.get(key, billing.markup)
        max_out = KNOWN_MAX_OUTPUT.get(model, billing.default_max_output_tokens)
        if override is not None:
            if override.markup is not None:
                model_markup = override.markup
            if override.max_output_tokens:
                max_out = override.max_output_tokens
            in_rates = [override.input_usd_per_mtok]
            for extra in (override.cached_input_usd_per_mtok, override.cache_write_usd_per_mtok):
                if extra is not None:
                    in_rates.append(extra)
            return ModelRates(
                key=key,
                markup=model_markup,
                max_output_tokens=max_out,
                bound_input_nanos=max(in_rates) * _PER_TOKEN,
                bound_output_nanos=override.output_usd_per_mtok * _PER_TOKEN,
                override=override,
            )
        catalog = self._catalog_price(provider, model)
        if catalog is None:
            return None
        fields = {k: v for k, v in vars(catalog).items() if k.endswith("_mtok") and v is not None}
        in_rates = [_max_rate(v) for k, v in fields.items() if not k.startswith("output")]
        out_rates = [_max_rate(v) for k, v in fields.items() if k.startswith("output")]
        return ModelRates(
            key=key,
            markup=model_markup,
            max_output_tokens=max_out,
            bound_input_nanos=max(in_rates, default=Decimal(0)) * _PER_TOKEN,
            bound_output_nanos=max(out_rates, default=Decimal(0)) * _PER_TOKEN,
            catalog=catalog,
        )

    def _catalog_price(self, provider: str, model: str) -> Any:
        settings = self._settings.providers.get(provider)
        catalog_provider = settings.catalog_provider if settings else None
        if not catalog_provider:
            return None
        try:
            from genai_prices import data_snapshot

            snapshot = data_snapshot.get_snapshot()
            _, info = snapshot.find_provider_model(model, None, catalog_provider, None)
            price = info.get_prices(datetime.now(UTC))
        except Exception:  # an unknown model is a LookupError; anything else is no price too
            return None
        if getattr(price, "input_mtok", None) is None:
            return None
        return price

    def catalog_models(self, provider: str) -> list[str]:
        """Models of a provider that the catalog prices (for GET /v1/models)."""
        settings = self._settings.providers.get(provider)
        if not settings or not settings.catalog_provider:
            return []
        try:
            from genai_prices import data_snapshot

            snapshot = data_snapshot.get_snapshot()
            prov = snapshot.find_provider(None, settings.catalog_provider, None)
        except Exception:
            return []
        return sorted(m.id for m in prov.models if m.id and not m.id.endswith(("-", ":")))
