"""The checks a reviewer would run, run by the suite so CI fails on them: ruff (lint and
format) and mypy (strict on money and services; see [tool.mypy] in pyproject.toml).
The import-linter contracts run in test_import_hygiene.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TREES = ["gateway", "ringside_tui", "tests", "bench", "scripts", "examples"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_ruff_lint_is_clean() -> None:
    out = run("ruff", "check", *TREES)
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_format_is_clean() -> None:
    out = run("ruff", "format", "--check", *TREES)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.slow
def test_mypy_is_clean() -> None:
    out = run("mypy", "gateway", "ringside_tui")
    assert out.returncode == 0, out.stdout + out.stderr
