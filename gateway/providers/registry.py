"""Providers by name, each with one pooled httpx.AsyncClient, owned by the app lifespan."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from gateway.config import Settings
from gateway.errors import InvalidModel, ModelNotFound
from gateway.providers.base import Provider
from gateway.providers.mock import MockProvider
from gateway.providers.openai_compat import OpenAICompatProvider


def parse_model(ref: object) -> tuple[str, str]:
    """'fc:provider/model' or 'provider/model' -> (provider, model)."""
    if not isinstance(ref, str) or not ref:
        raise InvalidModel("model is required, as 'fc:<provider>/<model>'.", param="model")
    name = ref.removeprefix("fc:")
    provider, sep, model = name.partition("/")
    if not sep or not provider or not model:
        raise InvalidModel(
            f"Model '{ref}' must be addressed as 'fc:<provider>/<model>' "
            "(for example fc:openai/gpt-4o-mini).",
            param="model",
        )
    return provider, model


class ProviderRegistry:
    def __init__(self, settings: Settings, max_output_tokens: Callable[[str, str], int]) -> None:
        self.providers: dict[str, Provider] = {}
        self._clients: list[httpx.AsyncClient] = []
        for name, ps in settings.providers.items():
            if ps.kind == "mock":
                self.providers[name] = MockProvider(ps)
                continue
            client = httpx.AsyncClient(
                base_url=ps.base_url,
                timeout=httpx.Timeout(ps.timeout_s, connect=min(ps.timeout_s, 10.0)),
                limits=httpx.Limits(max_connections=512, max_keepalive_connections=128),
                follow_redirects=False,
                trust_env=False,
            )
            self._clients.append(client)
            if ps.kind == "anthropic":
                from gateway.providers.anthropic import AnthropicProvider

                self.providers[name] = AnthropicProvider(
                    ps, client, lambda model, _n=name: max_output_tokens(_n, model)
                )
            else:
                self.providers[name] = OpenAICompatProvider(ps, client)

    def get(self, name: str, model: str) -> Provider:
        provider = self.providers.get(name)
        if provider is None:
            raise ModelNotFound(
                f"No provider '{name}' is configured (model 'fc:{name}/{model}'). "
                f"Configured: {', '.join(sorted(self.providers))}.",
                param="model",
            )
        return provider

    async def open(self) -> None:
        """Open the upstream connections (on the gateway's loop). Idempotent."""

    async def aclose(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()
        for client in self._clients:
            await client.aclose()
