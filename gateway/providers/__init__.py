"""Upstream adapters: OpenAI-compatible, Anthropic, mock. They move bytes, never money."""
