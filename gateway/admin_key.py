"""The admin key: RINGSIDE_ADMIN_KEY, or generated on first start and kept in the data dir."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from gateway.config import ConfigError, Settings

FILE_NAME = "admin_key"


def ensure_admin_key(settings: Settings) -> tuple[str, bool]:
    """Return (key, generated_now). A generated key is written with mode 0600."""
    if settings.admin_key:
        return settings.admin_key, False
    data_dir = settings.server.data_dir
    path = Path(data_dir) / FILE_NAME
    try:
        if path.exists():
            key = path.read_text(encoding="utf-8").strip()
            if len(key) >= 16:
                return key, False
        data_dir.mkdir(parents=True, exist_ok=True)
        key = "rsk_admin_" + secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(key + "\n")
        os.chmod(path, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot use data dir {str(data_dir)!r}: {exc.strerror}") from None
    return key, True
