"""Metering: one proxied call from parsed request to settlement (reserve → forward → settle).

Every entry point that sends a model call through Ringside (the three proxy routes, and
any future one) goes through `MeteringService.call`. The HTTP layer only parses headers,
hands over the raw body and shapes what comes back.
"""

from gateway.metering.service import (
    Endpoint,
    MeteredJson,
    MeteredResponse,
    MeteredStream,
    MeteringService,
)

__all__ = ["Endpoint", "MeteredJson", "MeteredResponse", "MeteredStream", "MeteringService"]
