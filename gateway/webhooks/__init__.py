"""Webhooks: a durable outbox of signed deliveries, a worker that sends and retries them,
and the endpoint/event service the HTTP API and the dashboard share."""
