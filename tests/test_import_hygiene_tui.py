"""Import hygiene at the two edges of the headless core.

- The Python client stands alone: `import gateway.client` loads none of the server's or the
  dashboard's libraries (checked in a clean subprocess).
- The dashboard goes only through services: `ringside_tui` imports nothing from the
  ledger's submodules, the database or the HTTP controllers, never reaches through the
  gateway object past `services` and `loop`, looks nothing up by name, and no module but
  the entry points imports the app (screens get what they need when they are built).

The import-linter contracts in pyproject.toml say the same about the import graph; these
read the source itself, so they also catch attribute reach-through and `getattr` wiring.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUI = ROOT / "ringside_tui"
TUI_FILES = sorted(TUI.rglob("*.py"))

SERVER_LIBRARIES = ("litestar", "peewee", "textual", "uvicorn", "apscheduler")
FORBIDDEN_PACKAGES = ("gateway.db", "gateway.api", "gateway.providers", "gateway.metering")
GATEWAY_ATTRIBUTES = {"services", "loop"}  # all the dashboard may read of a `Gateway`
APP_IMPORTERS = {"launch.py", "screenshots.py"}  # entry points that build the app


def test_the_client_imports_without_the_server() -> None:
    code = (
        "import sys, gateway.client\n"
        f"names = {SERVER_LIBRARIES!r}\n"
        "print(','.join(sorted({m.split('.')[0] for m in sys.modules} & set(names))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) for every import, `from a import b` counted as `a` and `a.b`."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _forbidden(module: str) -> bool:
    if any(module == p or module.startswith(p + ".") for p in FORBIDDEN_PACKAGES):
        return True
    # The ledger package's narrow API (its __init__) is allowed; its submodules are not.
    return module.startswith("gateway.ledger.") and _is_module(module)


@pytest.mark.parametrize("path", TUI_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_dashboard_goes_only_through_services(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    problems = [f"l.{line}: imports {m}" for line, m in _imports(tree) if _forbidden(m)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            if node.attr in ("ledger", "db"):
                problems.append(f"l.{node.lineno}: reaches through .{node.attr}")
            owner = node.value
            is_gateway = (isinstance(owner, ast.Name) and owner.id == "gw") or (
                isinstance(owner, ast.Attribute) and owner.attr == "gateway"
            )
            if is_gateway and node.attr not in GATEWAY_ATTRIBUTES:
                problems.append(f"l.{node.lineno}: reads gateway.{node.attr}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr", "setattr")
            and len(node.args) >= 2
            and not isinstance(node.args[1], ast.Constant)
        ):
            problems.append(f"l.{node.lineno}: looks an attribute up by a computed name")
    assert not problems, "\n".join(problems)


def test_only_the_entry_points_import_the_app() -> None:
    importers = sorted(
        str(path.relative_to(TUI))
        for path in TUI_FILES
        if any(
            m == "ringside_tui.app" or m.startswith("ringside_tui.app.")
            for _, m in _imports(ast.parse(path.read_text(encoding="utf-8")))
        )
    )
    assert set(importers) <= APP_IMPORTERS, importers
