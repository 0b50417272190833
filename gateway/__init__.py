"""Ringside gateway: the headless core (HTTP service, ledger, providers, webhooks, Stripe)."""

__version__ = "0.1.0"
