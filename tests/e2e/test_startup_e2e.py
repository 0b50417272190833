"""Start-up against the real process: every unreadable config, every environment value that
does not parse and a port in use are one line on stderr and exit 2, never a traceback
(issue 16)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ADMIN_KEY
from tests.e2e.conftest import free_port

pytestmark = pytest.mark.e2e

HOSTILE_FILES: dict[str, bytes] = {
    "invalid-utf8": b'[server]\nhost = "\xff\xfe"\n',
    "invalid-toml": b"[server\nport = 8787\n",
    "huge": b"#" + b"a" * (2 * 1024 * 1024) + b"\n",
    "unknown-key": b"[server]\nprot = 8787\n",
    "unknown-section": b"[serverr]\nport = 8787\n",
    "wrong-type": b'[server]\nport = "8787"\n',
    "wrong-type-nested": b'[providers.openai]\ntimeout_s = "slow"\n',
    "nested-10000-deep": b"x = " + b"[" * 10_000 + b"]" * 10_000 + b"\n",
    "inline-tables-10000-deep": b"x = " + b"{a = " * 10_000 + b"1" + b"}" * 10_000 + b"\n",
    "integer-of-5000-digits": b"[server]\nport = " + b"9" * 5000 + b"\n",
    "nan": b"[server]\nshutdown_grace_s = nan\n",
    "control-characters": b'[server]\nhost = "a\\u001b[2Jb"\n',
}


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RINGSIDE_", "OPENAI_", "ANTHROPIC_", "STRIPE_"))
    }
    env.update(RINGSIDE_ADMIN_KEY=ADMIN_KEY, PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def run(
    args: list[str], tmp_path: Path, env: dict[str, str] | None = None, module: str = "gateway"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args, "--data-dir", str(tmp_path / "data")],
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )


def assert_one_line(out: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit 2, exactly one line on stderr naming what is wrong, no traceback anywhere."""
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stdout + out.stderr, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    [line] = lines
    assert line.startswith("ringside: error: "), line
    for fragment in fragments:
        assert fragment in line, line
    return line


@pytest.mark.parametrize("name", list(HOSTILE_FILES))
def test_a_hostile_config_file_is_one_line_and_exit_2(tmp_path: Path, name: str) -> None:
    config = tmp_path / f"{name}.toml"
    config.write_bytes(HOSTILE_FILES[name])
    out = run(["serve", "--config", str(config), "--port", "0"], tmp_path)
    assert_one_line(out, str(config))
    assert not (tmp_path / "data").exists()  # nothing was started


def test_a_directory_as_the_config(tmp_path: Path) -> None:
    config = tmp_path / "conf.d"
    config.mkdir()
    out = run(["serve", "--config", str(config), "--port", "0"], tmp_path)
    assert_one_line(out, str(config), "is a directory")


def test_a_config_named_by_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "from-env.toml"
    config.write_bytes(HOSTILE_FILES["invalid-utf8"])
    out = run(["serve", "--port", "0"], tmp_path, env=clean_env(RINGSIDE_CONFIG=str(config)))
    assert_one_line(out, str(config), "not valid UTF-8")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RINGSIDE_PORT", "abc"),
        ("RINGSIDE_PORT", "70000"),
        ("RINGSIDE_DATABASE_URL", "mysql://nope/x"),
        ("RINGSIDE_DATABASE_URL", "postgresql://[::1/x"),
        ("OPENAI_BASE_URL", "http://[::1"),
        ("RINGSIDE_STRIPE_API_BASE", "not a url"),
        ("RINGSIDE_ADMIN_KEY", "short"),
        ("OPENAI_API_KEY", "sk-with a space"),
    ],
)
def test_an_environment_value_that_does_not_parse(
    tmp_path: Path, variable: str, value: str
) -> None:
    out = run(["serve"], tmp_path, env=clean_env(**{variable: value}))
    assert_one_line(out, variable)


def test_the_ringside_entry_point_reports_the_same_way(tmp_path: Path) -> None:
    """`ringside serve` and `ringside` (the dashboard) go through the same checks."""
    config = tmp_path / "bad.toml"
    config.write_bytes(HOSTILE_FILES["integer-of-5000-digits"])
    for args in (["serve", "--config", str(config)], ["--config", str(config)]):
        out = run(args, tmp_path, module="ringside_tui.cli")
        assert_one_line(out, str(config), "too many digits")


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_port_in_use_is_one_line_and_exit_2(
    tmp_path: Path, taken_port: int, workers: int
) -> None:
    out = run(["serve", "--port", str(taken_port), "--workers", str(workers)], tmp_path)
    line = assert_one_line(out, f"could not listen on 127.0.0.1:{taken_port}", "in use")
    assert "scheduler" not in line.lower()
    # The port is bound before anything starts: no database, no migrations, no jobs.
    assert not (tmp_path / "data").exists()


def test_a_host_that_is_not_ours(tmp_path: Path) -> None:
    out = run(["serve", "--host", "192.0.2.1", "--port", str(free_port())], tmp_path)
    assert_one_line(out, "could not listen on 192.0.2.1")


def test_a_data_dir_that_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--port", "0", "--data-dir", str(blocker)],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_one_line(out, f"cannot use data dir {str(blocker)!r}")
