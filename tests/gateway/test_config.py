"""Configuration: the TOML file and environment into one Settings; bad config stops start-up."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_settings

SPEC_EXAMPLE = """
[billing]
markup = 1.25
untagged = "reject"

[providers.local]
base_url = "http://127.0.0.1:8000/v1"
api_key_env = "LOCAL_API_KEY"

[prices."local/llama-3.1-8b"]
input_usd_per_mtok = 0.20
output_usd_per_mtok = 0.60

[webhooks]
initial_retry_delay_s = 5
max_retry_age_h = 72

[stripe]
meter_event_name = "ringside_usage"
sync_cron = "0 2 * * *"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_spec_example_loads(tmp_path: Path) -> None:
    s = load_settings(
        write(tmp_path, SPEC_EXAMPLE),
        env={"LOCAL_API_KEY": "k", "OPENAI_BASE_URL": "http://o.test/v1"},
    )
    assert s.billing.markup == Decimal("1.25")
    assert s.providers["local"].api_key == "k"
    assert s.providers["openai"].base_url == "http://o.test/v1"
    assert s.prices["local/llama-3.1-8b"].input_usd_per_mtok == Decimal("0.2")
    assert s.webhooks.initial_retry_delay_s == 5
    assert s.stripe.meter_event_name == "ringside_usage"


def test_env_and_overrides(tmp_path: Path) -> None:
    s = load_settings(
        None,
        env={"RINGSIDE_DATABASE_URL": "postgresql://h/db"},
        overrides={"port": 9000, "data_dir": str(tmp_path)},
    )
    assert s.server.port == 9000 and s.database_url == "postgresql://h/db"
    s = load_settings(None, env={}, overrides={"data_dir": str(tmp_path)})
    assert s.database_url.startswith("sqlite:///")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[billing]\nmarkup = -1\n", "markup"),
        ("[billing]\nmarkupp = 1\n", "unknown key 'markupp' in [billing]"),
        ("[bogus]\nx = 1\n", "unknown section [bogus]"),
        ('[providers.local]\nbase_url = "not a url"\n', "base_url"),
        ('[providers.local]\nbase_url = "ftp://x"\n', "base_url"),
        ('[providers.local]\nbase_url = "http://x:99999"\n', "base_url"),
        ('[providers.local]\napi_key_env = "X"\n', "needs base_url"),
        ('[billing]\nuntagged = "maybe"\n', "untagged"),
        ('[prices."x"]\ninput_usd_per_mtok = 1\noutput_usd_per_mtok = 1\n', "provider/model"),
        ('[prices."a/b"]\ninput_usd_per_mtok = 1\n', "output_usd_per_mtok"),
        ('[stripe]\nsync_cron = "every night"\n', "sync_cron"),
        ('[stripe]\nvalue = "euros"\n', "value"),
        ("this is = = not toml", "not valid TOML"),
        ('[server]\ndatabase_url = "mysql://x/y"\n', "[server] database_url"),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), env={})
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "missing.toml", env={})


@pytest.mark.parametrize(
    ("config", "extra_args"),
    [
        ("[billing]\nmarkup = -2\n", []),
        ("", ["--database-url", "mysql://nope/x"]),
        ("[nope]\n", []),
    ],
)
def test_serve_exits_2_with_one_line(tmp_path: Path, config: str, extra_args: list[str]) -> None:
    cfg = write(tmp_path, config)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--config",
            str(cfg),
            "--data-dir",
            str(tmp_path / "d"),
            "--port",
            "0",
            *extra_args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ringside: error:")
    assert "Traceback" not in proc.stderr


def test_admin_key_generated_once_with_0600(tmp_path: Path) -> None:
    from gateway.admin_key import ensure_admin_key

    s = load_settings(None, env={}, overrides={"data_dir": str(tmp_path)})
    key, generated = ensure_admin_key(s)
    assert generated and len(key) > 20
    assert (tmp_path / "admin_key").stat().st_mode & 0o777 == 0o600
    again, generated_again = ensure_admin_key(s)
    assert again == key and not generated_again


def test_version_is_printed_by_both_entry_points() -> None:
    import subprocess
    import sys

    from gateway import __version__

    for args in (["-m", "gateway", "--version"], ["-m", "ringside_tui.cli", "--version"]):
        out = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == f"ringside {__version__}"
