"""`Services`: the typed set of services the HTTP API and the dashboard both call.

Built once by `gateway.wiring.build_gateway`; nothing is looked up by name.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import MetricsSettings
from gateway.events import EventBus
from gateway.ledger import Idempotency
from gateway.metering import MeteringService
from gateway.ops import MetricsService
from gateway.services.audit import AuditService
from gateway.services.customers import CustomerService
from gateway.services.keys import KeyService
from gateway.services.plans import PlanService
from gateway.services.snapshots import SnapshotService
from gateway.services.statements import StatementService
from gateway.services.usage import UsageService
from gateway.services.wallets import WalletService
from gateway.stripe_sync import StripeSyncService
from gateway.webhooks.service import WebhookService


@dataclass(frozen=True, slots=True)
class Services:
    bus: EventBus
    metering: MeteringService
    customers: CustomerService
    plans: PlanService
    audit: AuditService
    keys: KeyService
    wallets: WalletService
    usage: UsageService
    statements: StatementService
    idempotency: Idempotency
    webhooks: WebhookService
    stripe: StripeSyncService
    snapshots: SnapshotService
    metrics: MetricsService
    metrics_settings: MetricsSettings
