"""Providers by name, each HTTP one with its own pooled aiohttp session.

The registry is built in full when constructed (providers and their clients); the sessions
need a running event loop, so the app lifespan opens them (`await registry.open()`) and
closes them (`await registry.aclose()`). A session not opened yet opens on first use.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from gateway.config import Settings
from gateway.errors import InvalidModel, ModelNotFound
from gateway.providers.base import Provider
from gateway.providers.mock import MockProvider
from gateway.providers.openai_compat import OpenAICompatProvider
from gateway.providers.upstream import UpstreamClient


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
        self._clients: list[UpstreamClient] = []
        for name, ps in settings.providers.items():
            if ps.kind == "mock":
                self.providers[name] = MockProvider(ps)
                continue
            client = UpstreamClient(ps, max_connections=ps.max_connections)
            self._clients.append(client)
            if ps.kind == "anthropic":
                from gateway.providers.anthropic import AnthropicProvider

                self.providers[name] = AnthropicProvider(
                    ps, client, functools.partial(max_output_tokens, name)
                )
            else:
                self.providers[name] = OpenAICompatProvider(ps, client)

    async def open(self) -> None:
        """Open every provider's HTTP session in the running loop. Idempotent."""
        for client in self._clients:
            await client.open()

    def get(self, name: str, model: str) -> Provider:
        provider = self.providers.get(name)
        if provider is None:
            raise ModelNotFound(
                f"No provider '{name}' is configured (model 'fc:{name}/{model}'). "
                f"Configured: {', '.join(sorted(self.providers))}.",
                param="model",
            )
        return provider

    async def aclose(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()
        for client in self._clients:
            await client.aclose()
