"""Schemathesis against a real `ringside serve`: every operation of the served document,
with the admin key, examples + coverage + fuzzing + stateful phases (the document's links:
create customer -> top up / get / usage; create endpoint -> rotate secret). Checks: no 5xx,
every answer's status, content type, headers and body conform to the document (every 4xx
is the error envelope, which the document gives every error status).

The suite runs a bounded budget twice: a fixed seed (the same cases every run) and an
unseeded run (new cases each CI run). For a longer local run:

    ringside serve --port 8787 &    # with RINGSIDE_ADMIN_KEY set
    python -m schemathesis.cli run http://127.0.0.1:8787/schema/openapi.json \\
      -H "Authorization: Bearer $RINGSIDE_ADMIN_KEY" -n 500 \\
      --checks not_a_server_error,status_code_conformance,content_type_conformance,\\
response_schema_conformance,response_headers_conformance
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import ServerProcess

pytestmark = pytest.mark.e2e

CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
    )
)


def run_schemathesis(server: ServerProcess, tmp_path: Path, *extra: str) -> None:
    args = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{server.base_url}/schema/openapi.json",
        "-H",
        f"Authorization: Bearer {server.admin_key}",
        "--checks",
        CHECKS,
        "--no-color",
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        *extra,
    ]
    out = subprocess.run(
        args, cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False
    )
    report = out.stdout[-20000:] + out.stderr[-5000:]
    assert out.returncode == 0, f"schemathesis found failures:\n{report}\n{server.log()}"
    assert "Traceback" not in server.log(), server.log()


@pytest.mark.slow
def test_schemathesis_with_a_fixed_seed(
    ringside_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    run_schemathesis(ringside_server(), tmp_path, "-n", "25", "--seed", "20261204")


@pytest.mark.slow
def test_schemathesis_unseeded(
    ringside_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    run_schemathesis(ringside_server(), tmp_path, "-n", "10")
