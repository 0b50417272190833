"""The headless core never imports the dashboard's libraries (checked in a clean subprocess)."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import importlib, pkgutil, sys
import gateway
for info in pkgutil.walk_packages(gateway.__path__, 'gateway.'):
    if info.name != 'gateway.__main__':
        importlib.import_module(info.name)
import ringside_tui.cli  # the entry point imports Textual lazily
bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich'))
print(','.join(bad))
"""


def test_gateway_never_imports_textual_or_rich() -> None:
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
