"""Every example in the user docs and in examples/ runs against a real `ringside serve`.

How a page's code blocks are exercised (the Markdown conventions writers follow):
- ```python blocks run in page order in one namespace, as a reader pastes them, with
  RINGSIDE_BASE_URL / RINGSIDE_API_KEY pointing at a fresh server whose OpenAI and
  Anthropic providers are a local fake upstream (so `fc:openai/gpt-4o` works offline,
  priced from the catalog).
- `<!-- skip-test -->` right before a block: not run (real keys, placeholders).
- `<!-- test: run -->` before a ```bash block: run by bash against that server.
- `<!-- test: product-page -->`, `<!-- test: restore -->`, `<!-- test: sqlite-to-postgres -->`:
  see the handlers. Bash blocks find `ringside` next to the Python running the tests.
- ```toml blocks must load as a configuration, ```json blocks must parse, and every
  `ringside ...` command line in a bash block must parse with the real CLI.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import stripe as real_stripe

from gateway.client import Ringside, _error_class
from gateway.config import load_settings
from tests.conftest import ADMIN_KEY, pg_reachable
from tests.e2e.conftest import ServerProcess
from tests.e2e.upstream import FakeUpstream
from tests.fakes.fake_stripe import API_KEY as STRIPE_KEY
from tests.fakes.fake_stripe import FakeStripe

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
OUR_DOCS = ["quickstart.md", "concepts.md", "configuration.md", "api.md", "operations.md"]
OUR_DOCS += ["client.md", "plans.md"]
# The client's examples; each must run offline against the mock provider.
EXAMPLES = [ROOT / "examples" / n for n in ("saas_flow.py", "openai_sdk.py", "handle_402.py")]
STRIPE_CUSTOMER = "cus_RkExample123"  # the Stripe customer docs/client.md bills
_MARKER = re.compile(r"^<!--\s*(skip-test|test:\s*[\w-]+)\s*-->$")


@dataclass
class Block:
    lang: str
    code: str
    marker: str | None
    line: int

    @property
    def where(self) -> str:
        return f"line {self.line}"


def blocks(page: Path) -> list[Block]:
    """Fenced blocks with the marker comment on the line right before each."""
    lines = page.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    marker: str | None = None
    i = 0
    while i < len(lines):
        text = lines[i].strip()
        if m := _MARKER.match(text):
            marker = m.group(1).replace(" ", "")
        elif text.startswith("```"):
            start, body = i + 1, []
            i += 1
            while not lines[i].strip().startswith("```"):
                body.append(lines[i])
                i += 1
            out.append(Block(text[3:].strip(), "\n".join(body) + "\n", marker, start))
            marker = None
        elif text:
            marker = None
        i += 1
    return out


# ---------------------------------------------------------------------------- running a page


@dataclass
class Page:
    """One doc page's run: its server, its namespace, what ran."""

    name: str
    server: ServerProcess
    monkeypatch: pytest.MonkeyPatch
    tmp_path: Path
    start_server: Callable[..., ServerProcess]
    server_env: dict[str, str]
    stripe: FakeStripe
    request: pytest.FixtureRequest
    ns: dict[str, Any] = field(default_factory=dict)
    ran: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # A real module: dataclasses and pickling look the page's names up in sys.modules.
        module = types.ModuleType(f"docs_{Path(self.name).stem}")
        self.monkeypatch.setitem(sys.modules, module.__name__, module)
        self.ns = module.__dict__

    def point_at(self, server: ServerProcess) -> None:
        self.server = server
        self.monkeypatch.setenv("RINGSIDE_BASE_URL", server.base_url)
        self.monkeypatch.setenv("RINGSIDE_DATA_DIR", str(server.data_dir))

    def run(self, block: Block) -> None:
        if block.marker == "skip-test":
            if block.lang == "bash":
                check_cli_lines(self, block)
            return
        handler = HANDLERS.get((block.lang, block.marker))
        if handler is None:
            pytest.fail(
                f"{self.name} {block.where}: no way to test a {block.lang} block "
                f"marked {block.marker}"
            )
        handler(self, block)
        self.ran.append(f"{block.lang}@{block.line}")

    def exec(self, code: str, block: Block) -> None:
        exec(compile(code, f"docs/{self.name}:{block.line}", "exec"), self.ns)


def run_python(page: Page, block: Block) -> None:
    page.exec(block.code, block)


def run_bash(page: Page, block: Block) -> None:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    out = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.code],
        env=env,
        cwd=page.tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, f"{page.name} {block.where}:\n{out.stdout}\n{out.stderr}"
    assert '{"error":' not in out.stdout, f"{page.name} {block.where}: {out.stdout}"


def check_cli_lines(page: Page, block: Block) -> None:
    """Shell blocks that are not run: each `ringside ...` line must still parse."""
    from ringside_tui.cli import build_parser

    for line in block.code.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "ringside":
            try:
                build_parser().parse_args(words[1:])
            except SystemExit as exc:  # --version and --help exit 0 once parsed
                if exc.code not in (0, None):
                    pytest.fail(f"{page.name} {block.where}: `{line.strip()}` does not parse")


def run_shell(page: Page, block: Block) -> None:
    check_cli_lines(page, block)
    if block.marker == "test:run":
        run_bash(page, block)


def check_toml(page: Page, block: Block) -> None:
    path = page.tmp_path / f"block{block.line}.toml"
    path.write_text(block.code)
    load_settings(path, env={"RINGSIDE_ADMIN_KEY": ADMIN_KEY})


def check_json(page: Page, block: Block) -> None:
    json.loads(block.code)


def run_product_page(page: Page, block: Block) -> None:
    """The product page's snippet: the first three lines run unchanged; the legacy Stripe
    line is not Python as printed and names an API Stripe removed, as the docs say."""
    lines = block.code.splitlines()
    cut = next(i for i, line in enumerate(lines) if line.startswith("stripe.UsageRecord"))
    page.exec("\n".join(lines[:cut]), block)
    resp, usage = page.ns["resp"], page.ns["usage"]
    assert resp.choices[0].message.content and resp.model == "gpt-4o"
    assert resp.usage.cost_usd > 0 and usage.requests == 1
    assert usage.total_cost_usd == resp.usage.cost_usd
    quantity = int(usage.total_cost_usd * 100)
    assert isinstance(quantity, int) and isinstance(usage.total_cost_usd, Decimal)

    with pytest.raises(SyntaxError):
        compile(lines[cut], "product page", "exec")
    assert not hasattr(real_stripe, "UsageRecord")
    sent: list[dict[str, Any]] = []
    stand_in = types.SimpleNamespace(
        UsageRecord=types.SimpleNamespace(create=lambda **kw: sent.append(kw))
    )
    filled = lines[cut].replace(", ...)", ")")
    exec(compile(filled, "product page", "exec"), {**page.ns, "stripe": stand_in})
    assert sent == [{"subscription_item": ..., "quantity": quantity}]


def run_restore(page: Page, block: Block) -> None:
    """The page's backup was taken just before: a customer created after it must be gone
    once the page's restore command ran with the gateway stopped; the rest is the same."""
    check_cli_lines(page, block)
    before = snapshot(page.server.base_url)
    with Ringside(page.server.base_url, ADMIN_KEY) as c:
        c.customers.create(external_id="after-the-backup", name="Later")
    page.server.stop()
    run_bash(page, block)
    page.server.start()
    assert snapshot(page.server.base_url) == before
    assert len(list(page.server.data_dir.glob("ringside.db.before-restore-*"))) == 1


def run_sqlite_to_postgres(page: Page, block: Block) -> None:
    """Stop the SQLite gateway, run the page's `ringside migrate --to` into a new database,
    start on PostgreSQL: everything a client can see must be the same."""
    check_cli_lines(page, block)
    if not pg_reachable():
        page.ran.append("(PostgreSQL unreachable: migrate not run)")
        return
    database_url = page.request.getfixturevalue("pg_server")()
    seed(page.server.base_url)
    before = snapshot(page.server.base_url)
    page.server.stop()
    page.monkeypatch.setenv("DATABASE_URL", database_url)
    run_bash(page, block)
    moved = page.start_server(env=page.server_env, database_url=database_url)
    assert snapshot(moved.base_url) == before
    page.point_at(moved)
    page.ran.append("(moved to PostgreSQL)")


def seed(base_url: str) -> None:
    """Something of everything a gateway keeps, for the copy to carry over."""
    hello = [{"role": "user", "content": "hello"}]
    with Ringside(base_url, ADMIN_KEY) as c:
        budget = c.customers.create(external_id="pg-1", name="B", budget_usd=5, markup=1.5)
        wallet = c.customers.create(external_id="pg-2", name="W", low_balance_threshold_usd=1)
        c.wallets.topup(wallet.id, 2, description="seed", idempotency_key="seed-topup")
        for who in (budget.id, wallet.id):
            c.chat.completions.create(model="fc:mock/mock-fast", messages=hello, customer=who)
            list(
                c.chat.completions.create(
                    model="fc:openai/gpt-4o", messages=hello, customer=who, stream=True
                )
            )
        c.customers.update(budget.id, status="suspended")
        c.keys.revoke(c.keys.create("old").id)
        c.keys.create("backend")


def snapshot(base_url: str) -> dict[str, Any]:
    with Ringside(base_url, ADMIN_KEY) as c:
        return {
            "customers": [
                {k: v for k, v in cust.to_dict().items() if k != "budget"}
                | {
                    "spent": cust.budget.spent_usd,
                    "wallet": c.wallets.retrieve(cust.id).to_dict(),
                }
                for cust in c.customers.list(limit=100)
            ],
            "usage": c.usage.retrieve(group_by="customer").to_dict(),
            "requests": [r.to_dict() for r in c.requests.list(limit=500)],
            "keys": [k.to_dict() for k in c.keys.list(include_revoked=True)],
        }


HANDLERS: dict[tuple[str, str | None], Callable[[Page, Block], None]] = {
    ("python", None): run_python,
    ("python", "test:product-page"): run_product_page,
    ("bash", "test:restore"): run_restore,
    ("bash", "test:sqlite-to-postgres"): run_sqlite_to_postgres,
    ("bash", None): run_shell,
    ("bash", "test:run"): run_shell,
    ("toml", None): check_toml,
    ("json", None): check_json,
}


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    up = FakeUpstream().start()
    yield up
    up.stop()


@pytest.fixture
def fake_stripe() -> Iterator[FakeStripe]:
    with FakeStripe(customers=[STRIPE_CUSTOMER]) as fake:
        yield fake


def provider_env(up: FakeUpstream) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": f"{up.url}/v1",
        "OPENAI_API_KEY": "sk-fake-upstream",
        "ANTHROPIC_BASE_URL": up.url,
        "ANTHROPIC_API_KEY": "sk-ant-fake-upstream",
    }


@pytest.mark.e2e
@pytest.mark.parametrize("name", OUR_DOCS)
def test_doc_examples_run(
    name: str,
    ringside_server: Callable[..., ServerProcess],
    upstream: FakeUpstream,
    fake_stripe: FakeStripe,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    env = provider_env(upstream)
    page = Page(
        name,
        ringside_server(env=env),
        monkeypatch,
        tmp_path,
        ringside_server,
        env,
        fake_stripe,
        request,
    )
    page.point_at(page.server)
    monkeypatch.setenv("RINGSIDE_API_KEY", ADMIN_KEY)
    monkeypatch.setenv("BACKUP_DIR", str(tmp_path / "backups"))
    monkeypatch.setenv("STRIPE_API_KEY", STRIPE_KEY)
    monkeypatch.setattr(real_stripe, "api_base", fake_stripe.url)
    monkeypatch.setattr(real_stripe, "api_key", None)
    monkeypatch.chdir(tmp_path)

    for block in blocks(DOCS / name):
        page.run(block)

    assert page.ran, f"{name}: no example was exercised"
    if name == "client.md":
        # The meter-events equivalent reached a Stripe that checks it as Stripe does.
        assert [a.status for a in fake_stripe.meter_attempts()] == [200]
        usage = page.ns["usage"]
        assert fake_stripe.totals() == {STRIPE_CUSTOMER: int(usage.total_price_usd * 100)}
    if name == "plans.md":
        assert page.ns["refused"].code == "model_not_allowed"
        assert page.ns["models"] == ["fc:openai/gpt-4o-mini"]
        assert page.ns["bob"].effective.limits.requests_per_minute == 20
    if name == "operations.md":
        backups = sorted(p.name for p in (tmp_path / "backups").iterdir())
        assert len(backups) == 1 and re.fullmatch(r"ringside-[\d-]+\.db", backups[0])
        assert "(moved to PostgreSQL)" in page.ran or not pg_reachable()


@pytest.mark.e2e
@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_scripts_run(
    script: Path, ringside_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = ringside_server()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RINGSIDE_", "OPENAI_"))}
    env.update(
        RINGSIDE_BASE_URL=server.base_url,
        RINGSIDE_API_KEY=ADMIN_KEY,
        RINGSIDE_MODEL="fc:mock/mock-fast",
        PYTHONPATH=str(ROOT),
    )
    out = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, f"{out.stdout}\n{out.stderr}"
    expected = {
        "saas_flow.py": "cents",
        "openai_sdk.py": "refused: 404 customer_not_found",
        "handle_402.py": "monthly_limit_reached",
    }
    assert expected[script.name] in out.stdout


# ---------------------------------------------------------------------------- docs vs code


def test_every_config_key_and_variable_is_documented() -> None:
    from gateway import config

    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    keys = set().union(*config._SECTION_KEYS.values(), config._PROVIDER_KEYS, config._PRICE_KEYS)
    missing = sorted(k for k in keys if f"`{k}`" not in text)
    source = Path(config.__file__).read_text(encoding="utf-8")
    variables = set(re.findall(r"env\.get\(\"([A-Z_]+)\"\)", source))
    variables |= {"RINGSIDE_ADMIN_KEY", "RINGSIDE_CONFIG"}
    missing += sorted(v for v in variables if f"`{v}`" not in text)
    assert missing == []


def _api_errors() -> list[type[Any]]:
    import importlib

    from gateway.errors import ApiError

    for module in ("gateway.webhooks.errors", "gateway.stripe_sync.errors"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError:
            pass
    found, todo = [], [ApiError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_error_code_is_in_the_table_with_its_client_class() -> None:
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    rows = {}
    for m in re.finditer(r"^\| (\d{3}) \| `(\w+)` \| .* \| `(\w+)` \|$", text, re.M):
        rows[m.group(2)] = (int(m.group(1)), m.group(3))
    for cls in _api_errors():
        if "code" not in vars(cls):
            continue  # an abstract grouping (PaymentRequired): its subclasses carry codes
        assert cls.code in rows, f"{cls.code} is not in docs/api.md"
        status, client_class = rows[cls.code]
        assert status == cls.status, cls.code
        assert _error_class(cls.code, cls.status).__name__ == client_class, cls.code


def _slug(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_between_the_docs_resolve() -> None:
    # Pages other people write may land later; their anchors are theirs to keep.
    others = {"webhooks.md", "stripe.md"}
    anchors: dict[str, set[str]] = {}
    for name in OUR_DOCS:
        text = (DOCS / name).read_text(encoding="utf-8")
        anchors[name] = {_slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}
        anchors[name] |= set(re.findall(r'<a id="([\w-]+)"></a>', text))
    for name in OUR_DOCS:
        text = (DOCS / name).read_text(encoding="utf-8")
        for target, anchor in re.findall(r"\]\(([\w.]*\.md)?(?:#([\w-]+))?\)", text):
            target = target or name
            if target in others:
                continue
            assert (DOCS / target).exists(), f"{name} links to missing {target}"
            if anchor:
                assert anchor in anchors[target], f"{name} links to {target}#{anchor}"
