"""The one Settings object: TOML config file + environment. Nothing else reads os.environ."""

from __future__ import annotations

import contextlib
import math
import os
import reprlib
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse


class ConfigError(Exception):
    """A configuration problem; the message is one line naming the problem.

    `from_file`: the value at fault came from the config file (load_settings then names the
    file); False for the environment and the command line, whose messages name the variable
    or the flag themselves."""

    def __init__(self, message: str, *, from_file: bool = True) -> None:
        super().__init__(message)
        self.from_file = from_file


# A config file is a few kilobytes; anything this large is a mistake (or an attack).
MAX_CONFIG_BYTES = 1024 * 1024
# What an error message shows of a bad value, and the longest message printed.
_SHOW = reprlib.Repr()
_SHOW.maxstring = 60
_SHOW.maxother = 60
_SHOW.maxlevel = 2
_SHOW.maxlist = _SHOW.maxtuple = _SHOW.maxdict = 4
MAX_MESSAGE_CHARS = 600


def show(value: Any) -> str:
    """A bad value as an error message shows it: repr, clipped, never nested deep."""
    return one_line(_SHOW.repr(value), 80)


def one_line(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text` as one printable line: control characters (newlines included) and lone
    surrogates escaped, clipped to `limit` characters."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextlib.contextmanager
def _not_from_file() -> Iterator[None]:
    """Errors raised inside are about the environment or the command line, not the file."""
    try:
        yield
    except ConfigError as exc:
        exc.from_file = False
        raise


def _env_text(name: str, value: str | None) -> str | None:
    """An environment variable's value; None when unset or empty. Values that are not
    valid UTF-8 (Python keeps their bytes as lone surrogates) are refused."""
    if not value:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{name} is not valid UTF-8", from_file=False) from None
    return value


BUILTIN_PROVIDERS = ("openai", "anthropic", "mock")
VALUE_UNITS = ("price_cents", "cost_cents", "price_microusd", "tokens")


@dataclass(frozen=True)
class ProviderSettings:
    name: str
    kind: str  # "openai" (any OpenAI-compatible API), "anthropic" or "mock"
    base_url: str
    api_key: str | None
    timeout_s: float = 600.0
    catalog_provider: str | None = None  # genai-prices provider id used for catalog prices
    models: tuple[str, ...] = ()
    latency_ms: int = 0  # mock only: simulated upstream latency
    # Open connections to this provider at most (streams hold theirs for their whole life).
    max_connections: int = 10_000
    # A runaway upstream is cut: the largest JSON answer (and SSE event), the most bytes one
    # stream may send, and the longest an answer may take in full.
    max_response_bytes: int = 32 * 1024 * 1024
    max_stream_bytes: int = 256 * 1024 * 1024
    max_duration_s: float = 3600.0


@dataclass(frozen=True)
class PriceOverride:
    input_usd_per_mtok: Decimal
    output_usd_per_mtok: Decimal
    cached_input_usd_per_mtok: Decimal | None = None
    cache_write_usd_per_mtok: Decimal | None = None
    markup: Decimal | None = None
    max_output_tokens: int | None = None


@dataclass(frozen=True)
class BillingSettings:
    markup: Decimal = Decimal("1")
    untagged: str = "reject"
    hold_ttl_s: float = 30.0
    budget_warning_share: Decimal = Decimal("0.8")
    min_output_tokens: int = 16
    default_max_output_tokens: int = 16384
    model_markups: Mapping[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8787
    data_dir: Path = Path(".ringside")
    database_url: str | None = None
    max_body_bytes: int = 4 * 1024 * 1024
    log_level: str = "info"
    # How long a write waits for a lock before the ledger fails closed (503).
    db_busy_timeout_ms: int = 5000
    # The settlement spool's file in the data dir (one per worker process).
    spool_name: str = "unsettled.jsonl"
    log_format: Literal["text", "json"] = "text"
    # One line per proxied call (request id, customer, route, status, latency, cost).
    # None: on with log_format = "json", off with "text".
    access_log: bool | None = None
    shutdown_grace_s: float = 30.0
    # Resource limits on client connections (per process; gateway/runtime.py enforces them).
    max_connections: int = 10_000  # open at once; more are answered 503 and closed
    max_header_bytes: int = 64 * 1024  # request line and headers; more: 431
    header_timeout_s: float = 10.0  # a request's headers, from its connection or first byte
    body_timeout_s: float = 60.0  # a request's body, from the end of its headers
    keep_alive_timeout_s: float = 5.0  # an idle connection between two requests


@dataclass(frozen=True)
class TracingSettings:
    enabled: bool = False
    endpoint: str = "http://127.0.0.1:4318/v1/traces"  # OTLP over HTTP
    service_name: str = "ringside"
    sample_ratio: float = 1.0


@dataclass(frozen=True)
class MetricsSettings:
    enabled: bool = True
    # A scraper's bearer token (besides the admin key); from the env var named here.
    token_env: str = "RINGSIDE_METRICS_TOKEN"
    token: str | None = None
    public: bool = False  # no key at all: for a scraper on a private network
    per_customer: bool = False  # a customer label on money counters (cardinality!)


@dataclass(frozen=True)
class WebhookSettings:
    initial_retry_delay_s: float = 5.0
    max_retry_age_h: float = 72.0
    disable_after_h: float = 120.0
    allow_private_networks: bool = True
    timeout_s: float = 10.0
    poll_interval_s: float = 1.0


@dataclass(frozen=True)
class StripeSettings:
    api_key_env: str = "STRIPE_API_KEY"
    api_key: str | None = None
    api_base: str | None = None
    meter_event_name: str = "ringside_usage"
    value: str = "price_cents"
    sync_cron: str = "0 2 * * *"
    create_customers: bool = False


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    billing: BillingSettings = field(default_factory=BillingSettings)
    providers: Mapping[str, ProviderSettings] = field(default_factory=dict)
    prices: Mapping[str, PriceOverride] = field(default_factory=dict)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    stripe: StripeSettings = field(default_factory=StripeSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    tracing: TracingSettings = field(default_factory=TracingSettings)
    admin_key: str | None = None
    config_path: Path | None = None

    @property
    def database_url(self) -> str:
        if self.server.database_url:
            return self.server.database_url
        return f"sqlite:///{self.server.data_dir / 'ringside.db'}"


# ---------------------------------------------------------------- parsing helpers

_SECTION_KEYS: dict[str, set[str]] = {
    "server": {
        "host",
        "port",
        "data_dir",
        "database_url",
        "max_body_bytes",
        "log_level",
        "db_busy_timeout_ms",
        "log_format",
        "access_log",
        "shutdown_grace_s",
        "max_connections",
        "max_header_bytes",
        "header_timeout_s",
        "body_timeout_s",
        "keep_alive_timeout_s",
    },
    "metrics": {"enabled", "token_env", "public", "per_customer"},
    "tracing": {"enabled", "endpoint", "service_name", "sample_ratio"},
    "billing": {
        "markup",
        "untagged",
        "hold_ttl_s",
        "budget_warning_share",
        "min_output_tokens",
        "default_max_output_tokens",
        "model_markups",
    },
    "webhooks": {
        "initial_retry_delay_s",
        "max_retry_age_h",
        "disable_after_h",
        "allow_private_networks",
        "timeout_s",
        "poll_interval_s",
    },
    "stripe": {
        "api_key_env",
        "api_base",
        "meter_event_name",
        "value",
        "sync_cron",
        "create_customers",
    },
}
_PROVIDER_KEYS = {
    "base_url",
    "api_key_env",
    "timeout_s",
    "kind",
    "catalog_provider",
    "models",
    "latency_ms",
    "max_connections",
    "max_response_bytes",
    "max_stream_bytes",
    "max_duration_s",
    "enabled",
}
_PRICE_KEYS = {
    "input_usd_per_mtok",
    "output_usd_per_mtok",
    "cached_input_usd_per_mtok",
    "cache_write_usd_per_mtok",
    "markup",
    "max_output_tokens",
}


def _secret(name: str, value: str | None, *, min_length: int = 0) -> str | None:
    """A key or token from the environment: printable ASCII without spaces (it travels in
    an HTTP header), at least `min_length` characters; None when unset or empty."""
    text = _env_text(name, value)
    if text is None:
        return None
    if not (text.isascii() and text.isprintable()) or any(c.isspace() for c in text):
        raise ConfigError(f"{name} must be printable ASCII without spaces", from_file=False)
    if len(text) < min_length:
        raise ConfigError(f"{name} must be at least {min_length} characters long", from_file=False)
    return text


def _check_keys(where: str, table: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError(f"[{where}] must be a table")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(
            f"unknown key {show(unknown[0])} in [{where}] (allowed: {', '.join(sorted(allowed))})"
        )
    return table


# No config number is this large; bigger ones are typos (and would overflow a float).
MAX_NUMBER = 10**15


def _decimal(where: str, value: Any, *, minimum: Decimal | None = Decimal(0)) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ConfigError(f"{where} must be a number, got {show(value)}")
    try:
        result = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ConfigError(f"{where} must be a number, got {show(value)}") from None
    if not result.is_finite():
        raise ConfigError(f"{where} must be a finite number, got {show(value)}")
    if minimum is not None and result < minimum:
        raise ConfigError(f"{where} must be >= {minimum}, got {show(value)}")
    if result > MAX_NUMBER:
        raise ConfigError(f"{where} must be at most {MAX_NUMBER:,}, got {show(value)}")
    return result


def _number(where: str, value: Any, *, minimum: float = 0.0, integer: bool = False) -> Any:
    ok_types = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_types):
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{where} must be {kind}, got {show(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where} must be a finite number, got {show(value)}")
    if value < minimum:
        raise ConfigError(f"{where} must be >= {minimum:g}, got {show(value)}")
    if value > MAX_NUMBER:
        raise ConfigError(f"{where} must be at most {MAX_NUMBER:,}, got {show(value)}")
    return value


def _string(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a non-empty string, got {show(value)}")
    if not value.isprintable():
        raise ConfigError(f"{where} must not contain control characters, got {show(value)}")
    return value


def _bool(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, got {show(value)}")
    return value


def _http_url(where: str, value: Any) -> str:
    url = _string(where, value)
    try:
        parsed = urlparse(url)
        ok = parsed.scheme in ("http", "https") and bool(parsed.hostname)
        parsed.port  # noqa: B018 - raises on a malformed port
    except ValueError:  # a bad port, an unclosed [IPv6 literal
        ok = False
    if not ok:
        raise ConfigError(f"{where} is not a valid http(s) URL: {show(url)}")
    return url.rstrip("/")


def _database_url(where: str, value: Any) -> str:
    url = _string(where, value)
    try:
        parsed = urlparse(url)
    except ValueError:
        raise ConfigError(f"{where} is not a valid database URL: {show(url)}") from None
    if parsed.scheme not in ("sqlite", "postgres", "postgresql"):
        raise ConfigError(f"{where} must start with sqlite:/// or postgresql://, got {show(url)}")
    if parsed.scheme != "sqlite" and not parsed.path.strip("/"):
        raise ConfigError(f"{where} must name a database, got {show(url)}")
    return url


def _cron(where: str, value: Any) -> str:
    expr = _string(where, value)
    if len(expr.split()) != 5:
        raise ConfigError(f"{where} must be a 5-field cron expression, got {show(expr)}")
    try:
        from apscheduler.triggers.cron import CronTrigger

        CronTrigger.from_crontab(expr, timezone="UTC")
    except Exception as exc:  # ValueError mostly; whatever APScheduler raises, one line
        raise ConfigError(f"{where} is not a valid cron expression: {one_line(str(exc))}") from None
    return expr


# ---------------------------------------------------------------- loading


def load_settings(
    config_path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build Settings from an optional TOML file, the environment and CLI overrides.

    Precedence: CLI overrides > environment > file > defaults.
    """
    env = os.environ if env is None else env
    overrides = dict(overrides or {})
    path_value = config_path or _env_text("RINGSIDE_CONFIG", env.get("RINGSIDE_CONFIG"))
    raw: dict[str, Any] = {}
    path: Path | None = None
    if path_value:
        path = Path(path_value)
        raw = _read_config_file(path)
    try:
        return _build(raw, env, overrides, path)
    except ConfigError as exc:
        if path is None or not exc.from_file:
            raise
        raise ConfigError(f"config file {_quote(path)}: {exc}") from None


def _quote(path: Path) -> str:
    return one_line(repr(str(path)), 300)


def _read_config_file(path: Path) -> dict[str, Any]:
    """The file's TOML as a dict. Every way a file can be unreadable is one ConfigError:
    a directory, missing or unreadable, over MAX_CONFIG_BYTES, not UTF-8, not TOML, nested
    too deeply for the parser, or holding a number too long to convert."""
    name = _quote(path)
    try:
        if path.is_dir():
            raise ConfigError(f"cannot read config file {name}: it is a directory")
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"cannot read config file {name}: {reason}") from None
    except ValueError:  # a path Python cannot pass to the OS (a NUL byte)
        raise ConfigError(f"cannot read config file {name}: not a valid path") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"config file {name} is larger than {MAX_CONFIG_BYTES // 1024 // 1024} MiB: "
            "not a Ringside config"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"config file {name} is not valid UTF-8 (line {line}: byte 0x{data[exc.start]:02x})"
        ) from None
    text = text.removeprefix("\ufeff")  # a byte-order mark some editors write
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {name} is not valid TOML: {one_line(str(exc))}") from None
    except RecursionError:
        raise ConfigError(
            f"config file {name} is not a usable config: arrays or tables nested too deeply"
        ) from None
    except ValueError as exc:  # Python's limit on the digits of an integer
        reason = "a number with too many digits" if "digits" in str(exc) else one_line(str(exc))
        raise ConfigError(f"config file {name} is not a usable config: {reason}") from None
    except Exception as exc:  # nothing else is known to escape tomllib; still one line
        raise ConfigError(
            f"config file {name} could not be parsed as TOML ({type(exc).__name__})"
        ) from None


def _build(
    raw: dict[str, Any], env: Mapping[str, str], overrides: dict[str, Any], path: Path | None
) -> Settings:
    known = {*_SECTION_KEYS, "providers", "prices"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(
            f"unknown section [{one_line(unknown[0], 80)}] (known: {', '.join(sorted(known))})"
        )
    server = _build_server(
        _check_keys("server", raw.get("server", {}), _SECTION_KEYS["server"]), env, overrides
    )
    billing = _build_billing(
        _check_keys("billing", raw.get("billing", {}), _SECTION_KEYS["billing"])
    )
    providers = _build_providers(raw.get("providers", {}), env)
    prices = _build_prices(raw.get("prices", {}))
    webhooks = _build_webhooks(
        _check_keys("webhooks", raw.get("webhooks", {}), _SECTION_KEYS["webhooks"])
    )
    stripe = _build_stripe(
        _check_keys("stripe", raw.get("stripe", {}), _SECTION_KEYS["stripe"]), env
    )
    metrics = _build_metrics(
        _check_keys("metrics", raw.get("metrics", {}), _SECTION_KEYS["metrics"]), env
    )
    tracing = _build_tracing(
        _check_keys("tracing", raw.get("tracing", {}), _SECTION_KEYS["tracing"])
    )
    admin_key = _secret("RINGSIDE_ADMIN_KEY", env.get("RINGSIDE_ADMIN_KEY"), min_length=16)
    return Settings(
        server=server,
        billing=billing,
        providers=providers,
        prices=prices,
        webhooks=webhooks,
        stripe=stripe,
        metrics=metrics,
        tracing=tracing,
        admin_key=admin_key,
        config_path=path,
    )


def _build_server(t: dict[str, Any], env: Mapping[str, str], o: dict[str, Any]) -> ServerSettings:
    d = ServerSettings()
    # The file's own values are checked even where the environment or a flag overrides
    # them: a broken file is refused whatever else is set.
    file_host = _string("[server] host", t.get("host", d.host))
    file_port = _number("[server] port", t.get("port", d.port), minimum=0, integer=True)
    if file_port > 65535:
        raise ConfigError(f"[server] port must be <= 65535, got {show(file_port)}")
    file_data_dir = _string("[server] data_dir", t.get("data_dir", str(d.data_dir)))
    file_db_url = (
        _database_url("[server] database_url", t["database_url"])
        if t.get("database_url") is not None
        else None
    )
    with _not_from_file():
        host = (
            (_string("--host", o["host"]) if o.get("host") else None)
            or _checked_env_string("RINGSIDE_HOST", env.get("RINGSIDE_HOST"))
            or file_host
        )
        port = _cli_or_env_port(o.get("port"), env.get("RINGSIDE_PORT"))
        data_dir = (
            (_string("--data-dir", o["data_dir"]) if o.get("data_dir") else None)
            or _checked_env_string("RINGSIDE_DATA_DIR", env.get("RINGSIDE_DATA_DIR"))
            or file_data_dir
        )
        if o.get("database_url"):
            db_url: str | None = _database_url("--database-url", o["database_url"])
        elif env_db := _env_text("RINGSIDE_DATABASE_URL", env.get("RINGSIDE_DATABASE_URL")):
            db_url = _database_url("RINGSIDE_DATABASE_URL", env_db)
        else:
            db_url = file_db_url
    max_body = _number(
        "[server] max_body_bytes",
        t.get("max_body_bytes", d.max_body_bytes),
        minimum=1024,
        integer=True,
    )
    log_level = _string("[server] log_level", t.get("log_level", d.log_level)).lower()
    if log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError(
            f"[server] log_level must be debug|info|warning|error, got {show(log_level)}"
        )
    busy = _number(
        "[server] db_busy_timeout_ms",
        t.get("db_busy_timeout_ms", d.db_busy_timeout_ms),
        minimum=1,
        integer=True,
    )
    log_format = t.get("log_format", d.log_format)
    if log_format not in ("text", "json"):
        raise ConfigError(f'[server] log_format must be "text" or "json", got {show(log_format)}')
    access_log = t.get("access_log")
    if access_log is not None and not isinstance(access_log, bool):
        raise ConfigError(f"[server] access_log must be true or false, got {show(access_log)}")
    grace = float(
        _number("[server] shutdown_grace_s", t.get("shutdown_grace_s", d.shutdown_grace_s))
    )

    def seconds(key: str, minimum: float) -> float:
        return float(_number(f"[server] {key}", t.get(key, getattr(d, key)), minimum=minimum))

    return ServerSettings(
        log_format=log_format,
        access_log=access_log,
        shutdown_grace_s=grace,
        db_busy_timeout_ms=busy,
        host=host,
        port=file_port if port is None else port,
        data_dir=Path(data_dir),
        database_url=db_url,
        max_body_bytes=max_body,
        log_level=log_level,
        max_connections=_number(
            "[server] max_connections",
            t.get("max_connections", d.max_connections),
            minimum=1,
            integer=True,
        ),
        max_header_bytes=_number(
            "[server] max_header_bytes",
            t.get("max_header_bytes", d.max_header_bytes),
            minimum=1024,
            integer=True,
        ),
        header_timeout_s=seconds("header_timeout_s", 0.1),
        body_timeout_s=seconds("body_timeout_s", 0.1),
        keep_alive_timeout_s=seconds("keep_alive_timeout_s", 0.1),
    )


def _checked_env_string(name: str, value: str | None) -> str | None:
    """A string setting from the environment (None when unset or empty), checked."""
    text = _env_text(name, value)
    return _string(name, text) if text is not None else None


def _cli_or_env_port(cli: Any, env_value: str | None) -> int | None:
    """--port (an int, argparse parsed it), else RINGSIDE_PORT; None when neither is set."""
    if cli is not None:
        port = _number("--port", cli, minimum=0, integer=True)
        where = "--port"
    else:
        text = _env_text("RINGSIDE_PORT", env_value)
        if text is None:
            return None
        where = "RINGSIDE_PORT"
        stripped = text.strip()
        if not (stripped.isascii() and stripped.isdigit() and len(stripped) <= 5):
            raise ConfigError(f"RINGSIDE_PORT must be a port number (0-65535), got {show(text)}")
        port = int(stripped)
    if port > 65535:
        raise ConfigError(f"{where} must be a port number (0-65535), got {port}")
    return int(port)


def _build_tracing(t: dict[str, Any]) -> TracingSettings:
    d = TracingSettings()
    enabled = t.get("enabled", d.enabled)
    if not isinstance(enabled, bool):
        raise ConfigError(f"[tracing] enabled must be true or false, got {show(enabled)}")
    ratio = float(_number("[tracing] sample_ratio", t.get("sample_ratio", d.sample_ratio)))
    if ratio > 1:
        raise ConfigError(f"[tracing] sample_ratio must be between 0 and 1, got {ratio}")
    return TracingSettings(
        enabled=enabled,
        endpoint=_http_url("[tracing] endpoint", t.get("endpoint", d.endpoint)),
        service_name=_string("[tracing] service_name", t.get("service_name", d.service_name)),
        sample_ratio=ratio,
    )


def _build_metrics(t: dict[str, Any], env: Mapping[str, str]) -> MetricsSettings:
    d = MetricsSettings()
    flags = {}
    for name in ("enabled", "public", "per_customer"):
        value = t.get(name, getattr(d, name))
        if not isinstance(value, bool):
            raise ConfigError(f"[metrics] {name} must be true or false, got {show(value)}")
        flags[name] = value
    token_env = _string("[metrics] token_env", t.get("token_env", d.token_env))
    token = _secret(f"${token_env} (the metrics token)", env.get(token_env), min_length=16)
    return MetricsSettings(token_env=token_env, token=token, **flags)


def _build_billing(t: dict[str, Any]) -> BillingSettings:
    d = BillingSettings()
    untagged = t.get("untagged", d.untagged)
    if untagged not in ("reject", "allow"):
        raise ConfigError(f'[billing] untagged must be "reject" or "allow", got {show(untagged)}')
    share = _decimal(
        "[billing] budget_warning_share", t.get("budget_warning_share", d.budget_warning_share)
    )
    if not Decimal(0) < share < Decimal(1):
        raise ConfigError(f"[billing] budget_warning_share must be between 0 and 1, got {share}")
    model_markups_raw = t.get("model_markups", {})
    if not isinstance(model_markups_raw, dict):
        raise ConfigError('[billing] model_markups must be a table of "provider/model" = markup')
    model_markups = {
        str(k): _decimal(f"[billing] model_markups.{one_line(str(k), 80)}", v)
        for k, v in model_markups_raw.items()
    }
    return BillingSettings(
        markup=_decimal("[billing] markup", t.get("markup", d.markup)),
        untagged=untagged,
        hold_ttl_s=float(
            _number("[billing] hold_ttl_s", t.get("hold_ttl_s", d.hold_ttl_s), minimum=1)
        ),
        budget_warning_share=share,
        min_output_tokens=_number(
            "[billing] min_output_tokens",
            t.get("min_output_tokens", d.min_output_tokens),
            minimum=1,
            integer=True,
        ),
        default_max_output_tokens=_number(
            "[billing] default_max_output_tokens",
            t.get("default_max_output_tokens", d.default_max_output_tokens),
            minimum=1,
            integer=True,
        ),
        model_markups=model_markups,
    )


def _build_providers(t: Any, env: Mapping[str, str]) -> dict[str, ProviderSettings]:
    if not isinstance(t, dict):
        raise ConfigError("[providers] must be a table of provider tables")
    base_url_env = {"openai": "OPENAI_BASE_URL", "anthropic": "ANTHROPIC_BASE_URL"}
    defaults: dict[str, dict[str, Any]] = {
        "openai": {
            "kind": "openai",
            "base_url": _env_text("OPENAI_BASE_URL", env.get("OPENAI_BASE_URL"))
            or "https://api.openai.com/v1",
            "api_key_env": "OPENAI_API_KEY",
            "catalog_provider": "openai",
        },
        "anthropic": {
            "kind": "anthropic",
            "base_url": _env_text("ANTHROPIC_BASE_URL", env.get("ANTHROPIC_BASE_URL"))
            or "https://api.anthropic.com",
            "api_key_env": "ANTHROPIC_API_KEY",
            "catalog_provider": "anthropic",
        },
        "mock": {"kind": "mock", "base_url": "http://mock.invalid", "api_key_env": None},
    }
    merged: dict[str, dict[str, Any]] = {k: dict(v) for k, v in defaults.items()}
    base_url_in_file: set[str] = set()
    for name, table in t.items():
        if not name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(
                f"[providers.{one_line(name, 80)}] provider names may use letters, digits, - and _"
            )
        table = _check_keys(f"providers.{name}", table, _PROVIDER_KEYS)
        base = merged.setdefault(name, {"kind": "openai", "api_key_env": None})
        base.update(table)
        if "base_url" in table:
            base_url_in_file.add(name)
        elif name not in defaults:
            raise ConfigError(f"[providers.{name}] needs base_url")
    out: dict[str, ProviderSettings] = {}
    d = ProviderSettings(name="", kind="", base_url="", api_key=None)
    for name, p in merged.items():
        where = f"[providers.{name}]"
        if "enabled" in p and not _bool(f"{where} enabled", p["enabled"]):
            continue
        kind = p.get("kind", "openai")
        if kind not in BUILTIN_PROVIDERS:
            raise ConfigError(f"{where} kind must be one of {', '.join(BUILTIN_PROVIDERS)}")
        key_env = p.get("api_key_env")
        if key_env is not None:
            key_env = _string(f"{where} api_key_env", key_env)
        models = p.get("models", [])
        if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
            raise ConfigError(f"{where} models must be a list of model names")
        catalog = p.get("catalog_provider")
        if name in base_url_env and name not in base_url_in_file:
            with _not_from_file():
                base_url = _http_url(base_url_env[name], p["base_url"])
        else:
            base_url = _http_url(f"{where} base_url", p["base_url"])
        with _not_from_file():
            api_key = _secret(f"${key_env}", env.get(key_env)) if key_env else None

        def count(key: str, minimum: int, p: dict[str, Any] = p, where: str = where) -> int:
            return int(
                _number(
                    f"{where} {key}", p.get(key, getattr(d, key)), minimum=minimum, integer=True
                )
            )

        out[name] = ProviderSettings(
            name=name,
            kind=kind,
            base_url=base_url,
            api_key=api_key,
            timeout_s=float(
                _number(f"{where} timeout_s", p.get("timeout_s", d.timeout_s), minimum=0.001)
            ),
            catalog_provider=_string(f"{where} catalog_provider", catalog) if catalog else None,
            models=tuple(models),
            latency_ms=_number(f"{where} latency_ms", p.get("latency_ms", 0), integer=True),
            max_connections=count("max_connections", 1),
            max_response_bytes=count("max_response_bytes", 1024),
            max_stream_bytes=count("max_stream_bytes", 1024),
            max_duration_s=float(
                _number(
                    f"{where} max_duration_s",
                    p.get("max_duration_s", d.max_duration_s),
                    minimum=0.1,
                )
            ),
        )
    return out


def _build_prices(t: Any) -> dict[str, PriceOverride]:
    if not isinstance(t, dict):
        raise ConfigError('[prices] must be a table of "provider/model" tables')
    out: dict[str, PriceOverride] = {}
    for model, table in t.items():
        label = f'prices."{one_line(model, 80)}"'
        where = f"[{label}]"
        if "/" not in model:
            raise ConfigError(f'{where} must be named "provider/model"')
        table = _check_keys(label, table, _PRICE_KEYS)
        for required in ("input_usd_per_mtok", "output_usd_per_mtok"):
            if required not in table:
                raise ConfigError(f"{where} needs {required}")

        def opt(key: str, table: dict[str, Any] = table, where: str = where) -> Decimal | None:
            return _decimal(f"{where} {key}", table[key]) if key in table else None

        max_out = table.get("max_output_tokens")
        out[model.removeprefix("fc:")] = PriceOverride(
            input_usd_per_mtok=_decimal(f"{where} input_usd_per_mtok", table["input_usd_per_mtok"]),
            output_usd_per_mtok=_decimal(
                f"{where} output_usd_per_mtok", table["output_usd_per_mtok"]
            ),
            cached_input_usd_per_mtok=opt("cached_input_usd_per_mtok"),
            cache_write_usd_per_mtok=opt("cache_write_usd_per_mtok"),
            markup=opt("markup"),
            max_output_tokens=(
                _number(f"{where} max_output_tokens", max_out, minimum=1, integer=True)
                if max_out is not None
                else None
            ),
        )
    return out


def _build_webhooks(t: dict[str, Any]) -> WebhookSettings:
    d = WebhookSettings()
    return WebhookSettings(
        initial_retry_delay_s=float(
            _number(
                "[webhooks] initial_retry_delay_s",
                t.get("initial_retry_delay_s", d.initial_retry_delay_s),
                minimum=0.01,
            )
        ),
        max_retry_age_h=float(
            _number(
                "[webhooks] max_retry_age_h",
                t.get("max_retry_age_h", d.max_retry_age_h),
                minimum=0.001,
            )
        ),
        disable_after_h=float(
            _number(
                "[webhooks] disable_after_h",
                t.get("disable_after_h", d.disable_after_h),
                minimum=0.001,
            )
        ),
        allow_private_networks=_bool(
            "[webhooks] allow_private_networks",
            t.get("allow_private_networks", d.allow_private_networks),
        ),
        timeout_s=float(
            _number("[webhooks] timeout_s", t.get("timeout_s", d.timeout_s), minimum=0.1)
        ),
        poll_interval_s=float(
            _number(
                "[webhooks] poll_interval_s",
                t.get("poll_interval_s", d.poll_interval_s),
                minimum=0.05,
            )
        ),
    )


def _build_stripe(t: dict[str, Any], env: Mapping[str, str]) -> StripeSettings:
    d = StripeSettings()
    key_env = _string("[stripe] api_key_env", t.get("api_key_env", d.api_key_env))
    with _not_from_file():
        api_base = _env_text("RINGSIDE_STRIPE_API_BASE", env.get("RINGSIDE_STRIPE_API_BASE"))
        if api_base is not None:
            api_base = _http_url("RINGSIDE_STRIPE_API_BASE", api_base)
        api_key = _secret(f"${key_env}", env.get(key_env))
    if api_base is None and t.get("api_base") is not None:
        api_base = _http_url("[stripe] api_base", t["api_base"])
    value = t.get("value", d.value)
    if value not in VALUE_UNITS:
        raise ConfigError(
            f"[stripe] value must be one of {', '.join(VALUE_UNITS)}, got {show(value)}"
        )
    return StripeSettings(
        api_key_env=key_env,
        api_key=api_key,
        api_base=api_base,
        meter_event_name=_string(
            "[stripe] meter_event_name", t.get("meter_event_name", d.meter_event_name)
        ),
        value=value,
        sync_cron=_cron("[stripe] sync_cron", t.get("sync_cron", d.sync_cron)),
        create_customers=_bool(
            "[stripe] create_customers", t.get("create_customers", d.create_customers)
        ),
    )
