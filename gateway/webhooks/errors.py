"""API errors of the webhook routes: one exception type per error code."""

from __future__ import annotations

from gateway.errors import ApiError, Conflict, NotFound


class WebhookEndpointNotFound(NotFound):
    code = "webhook_endpoint_not_found"
    default_message = "No such webhook endpoint."


class EventNotFound(NotFound):
    code = "event_not_found"
    default_message = "No such event."


class WebhookDeliveryNotFound(NotFound):
    code = "webhook_delivery_not_found"
    default_message = "No such webhook delivery."


class InvalidWebhookUrl(ApiError):
    code = "invalid_webhook_url"
    default_message = "The webhook URL is not allowed."


class WebhookEndpointDisabled(Conflict):
    code = "webhook_endpoint_disabled"
    default_message = "The webhook endpoint is disabled; enable it before retrying."
