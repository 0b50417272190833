"""The headless core never imports the dashboard's libraries (checked in clean subprocesses).

httpx itself imports `rich` for its optional command line whenever rich is installed (it
is, for the dashboard), so the strict check blocks textual and rich outright: every
gateway module must still import, proving the core never needs them.
"""

from __future__ import annotations

import subprocess
import sys

IMPORT_ALL = """
import importlib, pkgutil, sys
{prelude}
import gateway
for info in pkgutil.walk_packages(gateway.__path__, 'gateway.'):
    if info.name != 'gateway.__main__':
        importlib.import_module(info.name)
import ringside_tui.cli  # the entry point imports Textual lazily
print(','.join(sorted(m for m, mod in sys.modules.items()
                     if mod is not None and m.split('.')[0] in {targets})))
"""


def run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_gateway_imports_with_textual_and_rich_blocked() -> None:
    prelude = "for name in ('textual', 'rich'): sys.modules[name] = None"
    assert run(IMPORT_ALL.format(prelude=prelude, targets="('textual',)")) == ""


def test_gateway_never_loads_textual() -> None:
    assert run(IMPORT_ALL.format(prelude="", targets="('textual',)")) == ""


def test_import_linter_contract_is_kept() -> None:
    """The same boundary as a static contract (pyproject.toml [tool.importlinter])."""
    import shutil

    lint = shutil.which("lint-imports", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert lint, "import-linter is part of the test extras"
    out = subprocess.run([lint], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert " 0 broken" in out.stdout
