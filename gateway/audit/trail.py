"""Actors, actions and the one function that appends an audit entry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from gateway.db.models import AuditEntry
from gateway.ids import new_id

# Key kinds, plus the operator at the dashboard and Ringside itself (jobs, hooks).
ActorKind = Literal["admin", "billing", "read", "app", "dashboard", "system"]
Action = Literal[
    "customer.created",
    "customer.updated",
    "customer.suspended",
    "customer.archived",
    "wallet.topup",
    "key.created",
    "key.revoked",
    "webhook_endpoint.created",
    "webhook_endpoint.updated",
    "webhook_endpoint.deleted",
    "plan.created",
    "plan.updated",
    "plan.deleted",
    "stripe.sync",
    "stripe.batch_resolved",
]
# {field: [before, after]}. Money fields (named `*_usd`) hold integer nano-USD; the API
# turns them back into exact USD numbers.
Changes = dict[str, list[Any]]


@dataclass(frozen=True, slots=True)
class Actor:
    key_kind: ActorKind
    key_id: str | None = None  # None with key_kind "admin": the bootstrap RINGSIDE_ADMIN_KEY
    request_id: str | None = None
    ip: str | None = None
    idempotency_key: str | None = None


DASHBOARD = Actor("dashboard")
SYSTEM = Actor("system")


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> Changes:
    """The fields whose value changed, as {field: [before, after]}."""
    return {k: [before.get(k), after.get(k)] for k in after if before.get(k) != after.get(k)}


def record(
    actor: Actor,
    action: Action,
    now_ms: int,
    *,
    target_id: str | None,
    customer_id: str | None = None,
    changes: Changes | None = None,
) -> None:
    """Append one entry. Call inside the write transaction that makes the change."""
    AuditEntry.insert(
        id=new_id("aud"),
        created_ms=now_ms,
        key_id=actor.key_id,
        key_kind=actor.key_kind,
        action=action,
        target_id=target_id,
        customer_id=customer_id,
        changes=changes or None,
        request_id=actor.request_id,
        idempotency_key=actor.idempotency_key,
        ip=actor.ip,
    ).execute()
