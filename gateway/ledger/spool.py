"""The settlement spool: where a served call's settlement waits while the database is down.

Append-only JSON lines, fsynced on every append, in the data directory. Replayed by the
hold keeper once the database answers again; the request id (the request log's primary
key) makes a replay idempotent.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.ledger.types import Endpoint, OutcomeStatus

log = logging.getLogger("ringside.spool")


@dataclass(frozen=True)
class SettleRecord:
    request_id: str
    hold_id: str | None
    customer_id: str | None
    period: str
    budget_hold_nanos: int
    wallet_hold_nanos: int
    budget_nanos: int | None
    prepaid: bool
    low_balance_threshold_nanos: int | None
    started_ms: int
    provider: str
    model: str
    endpoint: Endpoint
    stream: bool
    status: OutcomeStatus
    http_status: int
    error_code: str | None
    latency_ms: int
    usage: tuple[int, int, int, int, int] | None  # TokenUsage fields, in order
    cost_nanos: int
    price_nanos: int
    over_hold: bool
    settled_ms: int
    # Rate limits (m0005); spool lines written before have none.
    rate_second: int = 0
    rate_tokens: int = 0
    token_subjects: tuple[str, ...] = ()
    slots: tuple[str, ...] = ()


class SettlementSpool:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, record: SettleRecord) -> None:
        line = json.dumps(dataclasses.asdict(record), separators=(",", ":")) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())

    def pending(self) -> int:
        with self._lock:
            if not self.path.exists():
                return 0
            return sum(1 for line in self.path.read_text().splitlines() if line.strip())

    def replay(self, apply: Callable[[SettleRecord], None]) -> int:
        """Apply each spooled record; keep those that still fail. Returns how many applied."""
        with self._lock:
            if not self.path.exists():
                return 0
            lines = [line for line in self.path.read_text().splitlines() if line.strip()]
            if not lines:
                return 0
            remaining: list[str] = []
            applied = 0
            for line in lines:
                try:
                    data = json.loads(line)
                    if data.get("usage") is not None:
                        data["usage"] = tuple(data["usage"])
                    for name in ("token_subjects", "slots"):
                        if name in data:
                            data[name] = tuple(data[name])
                    record = SettleRecord(**data)
                except (ValueError, TypeError):
                    log.error("unreadable spool line kept aside: %s", line[:200])
                    remaining.append(line)
                    continue
                try:
                    apply(record)
                    applied += 1
                except Exception as exc:
                    log.warning("spooled settlement %s still failing: %s", record.request_id, exc)
                    remaining.append(line)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text("".join(line + "\n" for line in remaining))
            os.replace(tmp, self.path)
            if applied:
                log.warning("replayed %d spooled settlement(s)", applied)
            return applied
