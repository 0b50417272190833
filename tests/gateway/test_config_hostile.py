"""Hostile config files and environment values: each is one ConfigError, one line, naming
the file (or the variable), never another exception (issue 16)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import MAX_CONFIG_BYTES, ConfigError, load_settings, one_line

ENV: dict[str, str] = {}


def refused(path: Path | None, env: dict[str, str] | None = None) -> str:
    """load_settings' error for `path`: a ConfigError (anything else fails the test) whose
    message is one printable line."""
    with pytest.raises(ConfigError) as info:
        load_settings(path, env=ENV if env is None else env)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    assert message.isprintable(), repr(message)
    assert len(message) <= 700, message
    return message


def hostile(tmp_path: Path, content: bytes | str, name: str = "ringside.toml") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


# ---------------------------------------------------------------------------- unreadable files

UNREADABLE: dict[str, tuple[bytes | str, str]] = {
    "invalid UTF-8": (b'[server]\nhost = "\xff\xfe"\n', "is not valid UTF-8 (line 2: byte 0xff)"),
    "invalid UTF-8, truncated sequence": (b"# caf\xc3", "is not valid UTF-8"),
    "UTF-16": ("[server]\nport = 1\n".encode("utf-16"), "is not valid UTF-8"),
    "invalid TOML": ("[server\nport = 1\n", "is not valid TOML"),
    "a duplicate key": ("[server]\nport = 1\nport = 2\n", "is not valid TOML"),
    "binary junk": (bytes(range(256)) * 8, "is not valid UTF-8"),
    "arrays nested 10,000 deep": ("x = " + "[" * 10_000 + "]" * 10_000 + "\n", "nested too deeply"),
    "inline tables nested 10,000 deep": (
        "x = " + "{a = " * 10_000 + "1" + "}" * 10_000 + "\n",
        "nested too deeply",
    ),
    "an integer of 5,000 digits": ("[server]\nport = " + "9" * 5000 + "\n", "too many digits"),
    "a negative integer of 5,000 digits": ("x = -" + "1" * 5000 + "\n", "too many digits"),
    "a date that does not exist": ("x = 2026-02-30\n", "is not valid TOML"),
}


@pytest.mark.parametrize("case", list(UNREADABLE))
def test_an_unreadable_file_is_one_line_naming_the_file(tmp_path: Path, case: str) -> None:
    content, fragment = UNREADABLE[case]
    path = hostile(tmp_path, content)
    message = refused(path)
    assert message.startswith(f"config file {str(path)!r}"), message
    assert fragment in message


def test_a_directory(tmp_path: Path) -> None:
    message = refused(tmp_path)
    assert message == f"cannot read config file {str(tmp_path)!r}: it is a directory"


def test_a_missing_file_and_one_without_permission(tmp_path: Path) -> None:
    assert "No such file or directory" in refused(tmp_path / "nope.toml")
    locked = hostile(tmp_path, "[server]\n")
    locked.chmod(0)
    try:
        if locked.open("rb"):  # root reads anything: nothing to test then
            pytest.skip("running as root")
    except PermissionError:
        assert "Permission denied" in refused(locked)
    finally:
        locked.chmod(0o600)


def test_a_file_over_one_mebibyte(tmp_path: Path) -> None:
    path = hostile(tmp_path, b"#" + b"a" * MAX_CONFIG_BYTES + b"\n")
    message = refused(path)
    assert message == f"config file {str(path)!r} is larger than 1 MiB: not a Ringside config"


def test_a_file_of_exactly_one_mebibyte_loads(tmp_path: Path) -> None:
    body = b"[server]\nport = 9000\n"
    path = hostile(tmp_path, body + b"#" * (MAX_CONFIG_BYTES - len(body) - 1) + b"\n")
    assert path.stat().st_size == MAX_CONFIG_BYTES
    assert load_settings(path, env=ENV).server.port == 9000


def test_an_endless_file_is_not_read_whole() -> None:
    message = refused(Path("/dev/zero"))
    assert "is larger than 1 MiB" in message


def test_a_byte_order_mark_is_allowed(tmp_path: Path) -> None:
    path = hostile(tmp_path, "\ufeff[server]\nport = 9001\n")
    assert load_settings(path, env=ENV).server.port == 9001


def test_the_file_can_come_from_the_environment(tmp_path: Path) -> None:
    path = hostile(tmp_path, b"\xff")
    message = refused(None, {"RINGSIDE_CONFIG": str(path)})
    assert message.startswith(f"config file {str(path)!r}")
    assert "RINGSIDE_CONFIG is not valid UTF-8" == refused(None, {"RINGSIDE_CONFIG": "\udcff"})


# ---------------------------------------------------------------------------- bad contents

BAD_CONTENTS: dict[str, tuple[str, str]] = {
    "unknown section": ("[serverr]\nport = 1\n", "unknown section [serverr]"),
    "unknown key": ("[server]\nprot = 1\n", "unknown key 'prot' in [server]"),
    "unknown provider key": ("[providers.openai]\ntimeout = 1\n", "unknown key 'timeout'"),
    "section that is not a table": ("server = 5\n", "[server] must be a table"),
    "string port": ('[server]\nport = "8787"\n', "[server] port must be an integer, got '8787'"),
    "float port": ("[server]\nport = 80.5\n", "[server] port must be an integer"),
    "boolean port": ("[server]\nport = true\n", "[server] port must be an integer"),
    "port out of range": ("[server]\nport = 70000\n", "[server] port must be <= 65535"),
    "huge port": ("[server]\nport = " + "9" * 4000 + "\n", "[server] port must be"),
    "array host": ('[server]\nhost = ["a"]\n', "[server] host must be a non-empty string"),
    "host with a NUL": ('[server]\nhost = "a\\u0000b"\n', "must not contain control characters"),
    "data_dir not a string": ("[server]\ndata_dir = 5\n", "[server] data_dir must be"),
    "data_dir with a newline": ('[server]\ndata_dir = "a\\nb"\n', "control characters"),
    "nan timeout": ("[server]\nshutdown_grace_s = nan\n", "must be a finite number"),
    "inf timeout": ("[providers.openai]\ntimeout_s = inf\n", "must be a finite number"),
    "overflowing float": ("[billing]\nhold_ttl_s = 1e400\n", "must be a finite number"),
    "integer too large for a float": (
        "[billing]\nhold_ttl_s = " + "9" * 400 + "\n",
        "[billing] hold_ttl_s must be at most",
    ),
    "decimal of a huge exponent": ('[billing]\nmarkup = "1e999999999"\n', "must be at most"),
    "decimal that is not a number": ('[billing]\nmarkup = "lots"\n', "must be a number"),
    "table as a number": ("[billing]\nmarkup = {a = 1}\n", "[billing] markup must be a number"),
    "string as a boolean": ('[metrics]\nenabled = "yes"\n', "[metrics] enabled must be true"),
    "negative limit": ("[server]\nmax_connections = 0\n", "[server] max_connections must be >="),
    "tiny header limit": ("[server]\nmax_header_bytes = 10\n", "max_header_bytes must be >="),
    "string timeout": ('[server]\nheader_timeout_s = "10s"\n', "header_timeout_s must be a"),
    "zero body timeout": ("[server]\nbody_timeout_s = 0\n", "body_timeout_s must be >= 0.1"),
    "string keep-alive": ('[server]\nkeep_alive_timeout_s = "5"\n', "keep_alive_timeout_s"),
    "provider byte cap": (
        '[providers.openai]\nmax_stream_bytes = "lots"\n',
        "[providers.openai] max_stream_bytes must be an integer",
    ),
    "provider duration": ("[providers.openai]\nmax_duration_s = -1\n", "max_duration_s must be"),
    "bad cron": ('[stripe]\nsync_cron = "*/0 * * * *"\n', "sync_cron"),
    "cron out of range": ('[stripe]\nsync_cron = "99999999999999999999 * * * *"\n', "sync_cron"),
    "malformed IPv6 URL": ('[providers.x]\nbase_url = "http://[::1"\n', "base_url is not a valid"),
    "malformed database URL": ('[server]\ndatabase_url = "postgresql://[::1/x"\n', "database"),
    "models not strings": ("[providers.openai]\nmodels = [1, 2]\n", "models must be a list"),
    "providers not a table": ("providers = 1\n", "[providers] must be a table"),
}


@pytest.mark.parametrize("case", list(BAD_CONTENTS))
def test_bad_contents_are_one_line_naming_the_file_and_the_key(tmp_path: Path, case: str) -> None:
    text, fragment = BAD_CONTENTS[case]
    path = hostile(tmp_path, text)
    message = refused(path)
    assert message.startswith(f"config file {str(path)!r}: "), message
    assert fragment in message, message


@pytest.mark.parametrize(
    "text",
    [
        '["a\\nb"]\nx = 1\n',
        '[providers."a\\nb"]\nbase_url = "http://x"\n',
        '[prices."a\\nb"]\ninput_usd_per_mtok = 1\noutput_usd_per_mtok = 1\n',
        '[prices."a/\\u001b[31m"]\ninput_usd_per_mtok = -1\noutput_usd_per_mtok = 1\n',
        '[billing.model_markups]\n"a/\\nb" = -1\n',
        '[server]\n"\\u001b[2J" = 1\n',
        '[server]\nlog_level = "' + "x\\n" * 5000 + '"\n',
        "[server]\nport = [" + "[" * 200 + "]" * 200 + "]\n",
        '[server]\nhost = "' + "h" * 500_000 + '"\nport = "x"\n',
    ],
)
def test_names_and_values_are_shown_escaped_and_clipped(tmp_path: Path, text: str) -> None:
    refused(hostile(tmp_path, text))  # one printable line of bounded length


# ---------------------------------------------------------------------------- the environment

BAD_ENV: dict[str, tuple[dict[str, str], str]] = {
    "port not a number": ({"RINGSIDE_PORT": "abc"}, "RINGSIDE_PORT must be a port number"),
    "port out of range": ({"RINGSIDE_PORT": "70000"}, "RINGSIDE_PORT must be a port number"),
    "negative port": ({"RINGSIDE_PORT": "-1"}, "RINGSIDE_PORT must be a port number"),
    "port of many digits": ({"RINGSIDE_PORT": "9" * 5000}, "RINGSIDE_PORT must be a port"),
    "port in other digits": ({"RINGSIDE_PORT": "٨٠"}, "RINGSIDE_PORT must be a port number"),
    "host with control characters": ({"RINGSIDE_HOST": "a\x1bb"}, "RINGSIDE_HOST must not"),
    "database URL": ({"RINGSIDE_DATABASE_URL": "mysql://x/y"}, "RINGSIDE_DATABASE_URL must"),
    "database URL, bad IPv6": (
        {"RINGSIDE_DATABASE_URL": "postgresql://[::1/x"},
        "RINGSIDE_DATABASE_URL is not a valid database URL",
    ),
    "OpenAI URL": ({"OPENAI_BASE_URL": "http://[::1"}, "OPENAI_BASE_URL is not a valid"),
    "Anthropic URL": ({"ANTHROPIC_BASE_URL": "ftp://x"}, "ANTHROPIC_BASE_URL is not a valid"),
    "Stripe URL": ({"RINGSIDE_STRIPE_API_BASE": "nope"}, "RINGSIDE_STRIPE_API_BASE is not"),
    "short admin key": ({"RINGSIDE_ADMIN_KEY": "short"}, "RINGSIDE_ADMIN_KEY must be at least"),
    "admin key with a space": (
        {"RINGSIDE_ADMIN_KEY": "0123456789 abcdefgh"},
        "RINGSIDE_ADMIN_KEY must be printable ASCII without spaces",
    ),
    "admin key not UTF-8": ({"RINGSIDE_ADMIN_KEY": "\udcff" * 20}, "RINGSIDE_ADMIN_KEY is not"),
    "provider key with CR": ({"OPENAI_API_KEY": "sk-abc\r"}, "$OPENAI_API_KEY must be printable"),
    "metrics token": ({"RINGSIDE_METRICS_TOKEN": "short"}, "the metrics token) must be at"),
    "data dir not UTF-8": ({"RINGSIDE_DATA_DIR": "/tmp/\udcff"}, "RINGSIDE_DATA_DIR is not"),
}


@pytest.mark.parametrize("case", list(BAD_ENV))
def test_environment_values_that_do_not_parse(tmp_path: Path, case: str) -> None:
    env, fragment = BAD_ENV[case]
    assert fragment in refused(None, env)
    # With a config file too, the message still blames the variable, not the file.
    message = refused(hostile(tmp_path, "[server]\n"), env)
    assert fragment in message and "config file" not in message


def test_environment_and_flags_win_over_the_file(tmp_path: Path) -> None:
    path = hostile(tmp_path, '[server]\nhost = "127.0.0.2"\nport = 1111\n')
    s = load_settings(path, env={"RINGSIDE_PORT": "2222", "RINGSIDE_HOST": "127.0.0.3"})
    assert (s.server.host, s.server.port) == ("127.0.0.3", 2222)
    s = load_settings(
        path, env={"RINGSIDE_PORT": "2222"}, overrides={"port": 3333, "host": "127.0.0.4"}
    )
    assert (s.server.host, s.server.port) == ("127.0.0.4", 3333)
    s = load_settings(path, env={"RINGSIDE_PORT": ""})  # empty: unset
    assert s.server.port == 1111


def test_a_bad_flag_names_the_flag(tmp_path: Path) -> None:
    path = hostile(tmp_path, "[server]\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={}, overrides={"port": 70000})
    message = str(info.value)
    assert message == "--port must be a port number (0-65535), got 70000"
    with pytest.raises(ConfigError, match=r"^--database-url must start with"):
        load_settings(path, env={}, overrides={"database_url": "mysql://x/y"})


# ---------------------------------------------------------------------------- defaults


def test_resource_limit_defaults(tmp_path: Path) -> None:
    s = load_settings(None, env={})
    assert s.server.max_connections == 10_000
    assert s.server.max_header_bytes == 64 * 1024
    assert (s.server.header_timeout_s, s.server.body_timeout_s) == (10.0, 60.0)
    assert s.server.keep_alive_timeout_s == 5.0
    openai = s.providers["openai"]
    assert openai.max_response_bytes == 32 * 1024 * 1024
    assert openai.max_stream_bytes == 256 * 1024 * 1024
    assert openai.max_duration_s == 3600.0
    path = hostile(
        tmp_path,
        "[server]\nmax_connections = 50\nheader_timeout_s = 2.5\n"
        "[providers.openai]\nmax_stream_bytes = 4096\nmax_duration_s = 30\n",
    )
    s = load_settings(path, env={})
    assert (s.server.max_connections, s.server.header_timeout_s) == (50, 2.5)
    assert s.providers["openai"].max_stream_bytes == 4096
    assert s.providers["openai"].max_duration_s == 30.0


def test_one_line() -> None:
    assert one_line("a\nb\x1b[2J\udcff") == "a\\nb\\x1b[2J\\udcff"
    assert one_line("x" * 1000, 10) == "xxxxxxx..."
