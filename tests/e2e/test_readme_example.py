"""README's usage example runs against a real `ringside serve` (port and key substituted)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_python_example_runs(ringside_server: Any, capsys: Any) -> None:
    server = ringside_server()
    blocks = re.findall(r"```python\n(.+?)```", README.read_text(), re.S)
    assert blocks, "README has no python example"
    for code in blocks:
        code = code.replace("http://127.0.0.1:8787", server.base_url)
        code = code.replace("change-me-to-a-long-random-secret", server.admin_key)
        exec(compile(code, "README.md", "exec"), {})
    cost, price = capsys.readouterr().out.split()
    assert float(cost) > 0 and float(price) >= float(cost)
