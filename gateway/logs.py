"""Logging for `ringside serve`: text lines, or one JSON object per line.

`[server] log_format = "json"` gives log shippers one object per line: `ts`, `level`,
`logger`, `message`, plus the fields a record carries (the access line's `request_id`,
`customer_id`, `route`, `model`, `status`, `latency_ms`, `cost_usd`, `price_usd`).
Ringside never logs prompts, completions, API keys, webhook secrets or the admin key.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

# Attributes every LogRecord has; anything else on a record came in through `extra=`.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure(level: str, fmt: Literal["text", "json"] = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    quiet_libraries()


def quiet_libraries() -> None:
    """Library loggers that would print what must never be logged, or only noise."""
    # Peewee logs every statement with its parameters at DEBUG: webhook secrets, key
    # hashes and customer data would reach the log.
    logging.getLogger("peewee").setLevel(logging.INFO)
    # Job (re)registration chatter is not news to an operator.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
