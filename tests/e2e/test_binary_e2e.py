"""The single executable, built the way a release is and run the way an operator runs it.

The session builds `ringside` once with scripts/build_binary.sh (PyInstaller onefile, in a
clean virtualenv, into a temp dir; about two minutes) and runs the BUILT FILE with an
environment that holds no Python at all: `PATH=/usr/bin:/bin`, a temp HOME and a temp
working directory, so nothing of this checkout or its virtualenv can leak in.

Set RINGSIDE_RECORD_BENCH=1 to rewrite bench/binary.md with the size and start-up time
measured here (they are printed either way; the size is asserted, the time is not, since
timings on a shared CI machine are noise).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import platform
import re
import select
import signal
import statistics
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks import Webhook

from gateway import __version__
from tests.e2e.conftest import free_port
from tests.e2e.upstream import FakeUpstream

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "scripts" / "build_binary.sh"
MAX_SIZE_BYTES = 60 * 1000 * 1000  # the target: <= 60 MB
ADMIN_KEY = "rsk_admin_binary_e2e_0123456789abcdef"
SLOW_STREAM = "[mock:sleep_ms=2500] [mock:tokens=20]"
ANSI = re.compile(rb"\x1b(\[[0-9;?<>=]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")


@dataclass
class Binary:
    path: Path
    build_s: float
    pyinstaller: str
    startup_s: list[float] = field(default_factory=list)

    @property
    def size(self) -> int:
        return self.path.stat().st_size


@pytest.fixture(scope="session")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Binary:
    out = tmp_path_factory.mktemp("ringside-binary")
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    env.update(
        BUILD_DIR=str(out / "build"),
        DIST_DIR=str(out / "dist"),
        BASE_PYTHON=sys.executable,
    )
    started = time.monotonic()
    build = subprocess.run(
        ["bash", str(BUILD_SCRIPT)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    build_s = time.monotonic() - started
    tail = (build.stdout + build.stderr)[-3000:]
    if build.returncode == 3:  # the script's "no package index" status
        pytest.skip(f"PyInstaller cannot be installed here: {tail.strip().splitlines()[-1]}")
    assert build.returncode == 0, f"scripts/build_binary.sh failed:\n{tail}"
    venv_python = out / "build" / "venv" / "bin" / "python"
    version = subprocess.run(
        [str(venv_python), "-m", "PyInstaller", "--version"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    print(f"\nbuilt {out / 'dist' / 'ringside'} in {build_s:.0f} s (PyInstaller {version})")
    return Binary(out / "dist" / "ringside", build_s, version)


def bare_env(home: Path, **extra: str) -> dict[str, str]:
    """No virtualenv, no PYTHONPATH, no site-packages: what a fresh server has. The
    bundle unpacks under the test's temp dir, so a killed run leaves nothing in /tmp."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "TMPDIR": str(home),
        "LANG": "C.UTF-8",
        **extra,
    }


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    base_url: str
    log: Path
    ready_after_s: float

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_KEY}", **extra}

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self, sig: int = signal.SIGTERM, *, group: bool = False) -> int:
        if group:
            os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)


@contextlib.contextmanager
def serve(
    binary: Binary,
    tmp: Path,
    data_dir: Path,
    config: str = "",
    *extra: str,
    env: dict[str, str] | None = None,
) -> Iterator[Served]:
    """`ringside serve` from the built file, in its own session (its own process group)."""
    port = free_port()
    log = tmp / f"serve-{port}.log"
    args = [str(binary.path), "serve", "--port", str(port), "--data-dir", str(data_dir), *extra]
    if config:
        (tmp / f"ringside-{port}.toml").write_text(config)
        args += ["--config", str(tmp / f"ringside-{port}.toml")]
    started = time.monotonic()
    proc = subprocess.Popen(
        args,
        env=bare_env(tmp, RINGSIDE_ADMIN_KEY=ADMIN_KEY, **(env or {})),
        cwd=tmp,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    served = Served(proc, base_url, log, 0.0)
    try:
        while True:
            if proc.poll() is not None:
                raise AssertionError(
                    f"the binary exited with {proc.returncode}:\n{served.log_text()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base_url}/healthz", timeout=0.5).status_code == 200:
                    break
            if time.monotonic() - started > 60:
                raise AssertionError(f"/healthz never answered:\n{served.log_text()}")
            time.sleep(0.01)
        served.ready_after_s = time.monotonic() - started
        yield served
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


class Receiver:
    """A local HTTP endpoint standing in for a webhook receiver and an OTLP collector."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str], bytes]] = []
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                posts.append((self.path, dict(self.headers.items()), body))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def received(self, path: str) -> list[tuple[dict[str, str], bytes]]:
        return [(headers, body) for p, headers, body in self.posts if p == path]

    def wait_for(self, path: str, timeout: float = 30) -> list[tuple[dict[str, str], bytes]]:
        deadline = time.monotonic() + timeout
        while not self.received(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.received(path)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def chat(prompt: str = "hello", *, stream: bool = False) -> dict[str, Any]:
    return {
        "model": "fc:mock/mock-fast",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": 50,
        "stream": stream,
    }


class SlowStream(threading.Thread):
    """A streamed call that is still running when the signal arrives."""

    def __init__(self, served: Served, customer: str):
        super().__init__(daemon=True)
        self.served, self.customer = served, customer
        self.status = 0
        self.body = ""
        self.first_chunk = threading.Event()

    def run(self) -> None:
        with httpx.stream(
            "POST",
            f"{self.served.base_url}/v1/chat/completions",
            headers=self.served.headers(**{"FC-Customer": self.customer}),
            json=chat(f"stream {SLOW_STREAM}", stream=True),
            timeout=60,
        ) as r:
            self.status = r.status_code
            for chunk in r.iter_text():
                self.body += chunk
                self.first_chunk.set()
        self.first_chunk.set()


def mapped_files_of_children(pid: int) -> str:
    """/proc/<child>/maps of the onefile bootloader's child: the Python program."""
    maps = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                maps.append((stat.parent / "maps").read_text())
    return "".join(maps)


def drained_stream(served: Served, customer: str, sig: int, *, group: bool) -> tuple[int, str]:
    call = SlowStream(served, customer)
    call.start()
    assert call.first_chunk.wait(30), served.log_text()
    code = served.stop(sig, group=group)
    call.join(30)
    return code, call.body


def test_version_size_and_every_module_in_the_bundle(binary: Binary, tmp_path: Path) -> None:
    def run(**env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(binary.path), "--version"],
            env=bare_env(tmp_path, **env),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    out = run()
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"ringside {__version__}"
    # Every module of Ringside, what libraries load by name, the migrations (found with
    # pkgutil), the genai-prices catalog, Textual's widgets, the dashboard's stylesheet.
    check = run(RINGSIDE_BINARY_SELFTEST="1")
    print(f"\n{check.stdout.strip()}")
    assert check.returncode == 0, check.stdout + check.stderr
    migrations = sorted(p.stem for p in (ROOT / "gateway/db/migrations").glob("m[0-9]*.py"))
    assert f"migrations: {', '.join(migrations)}" in check.stdout
    print(f"\nbinary size: {binary.size} bytes ({binary.size / 1e6:.1f} MB)")
    assert binary.size <= MAX_SIZE_BYTES, f"{binary.size / 1e6:.1f} MB > 60 MB"


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    up = FakeUpstream().start()
    yield up
    up.stop()


def test_serve_meters_signs_traces_and_sigterm_drains_and_exits_zero(
    binary: Binary, tmp_path: Path, receiver: Receiver, upstream: FakeUpstream
) -> None:
    data = tmp_path / "data"
    config = f"""
[webhooks]
poll_interval_s = 0.2

[tracing]
enabled = true
endpoint = "{receiver.url}/v1/traces"
"""
    openai = {"OPENAI_BASE_URL": f"{upstream.url}/v1", "OPENAI_API_KEY": "sk-fake-upstream"}
    with serve(binary, tmp_path, data, config, env=openai) as served:
        h = served.headers()
        with httpx.Client(base_url=served.base_url, timeout=30) as c:
            created = c.post(
                "/v1/customers",
                headers=h,
                json={"external_id": "bin-1", "name": "Binary", "budget_usd": 5},
            )
            assert created.status_code == 201, created.text
            cid = created.json()["id"]
            r = c.post(
                "/v1/chat/completions",
                headers=served.headers(**{"FC-Customer": "bin-1"}),
                json=chat(),
            )
            assert r.status_code == 200, r.text
            assert r.json()["usage"]["cost_usd"] > 0
            # A real provider (a local fake of OpenAI's API), priced from the bundled
            # genai-prices catalog.
            r = c.post(
                "/v1/chat/completions",
                headers=served.headers(**{"FC-Customer": "bin-1"}),
                json={**chat(), "model": "fc:openai/gpt-4o"},
            )
            assert r.status_code == 200, r.text
            assert r.json()["usage"]["cost_usd"] > 0
            usage = c.get("/v1/usage", headers=h, params={"customer_id": cid}).json()
            assert usage["requests"] == 2
            assert usage["total_cost_usd"] > 0
            assert c.get("/metrics").status_code == 401
            metrics = c.get("/metrics", headers=h)
            assert metrics.status_code == 200
            calls = [
                s.value
                for family in text_string_to_metric_families(metrics.text)
                for s in family.samples
                if s.name == "ringside_requests_total" and s.labels.get("status") == "200"
            ]
            assert sum(calls) >= 1, metrics.text[:2000]
            assert c.get("/readyz").status_code == 200
            # uvicorn chose uvloop and httptools (picked by import string at run time).
            mapped = mapped_files_of_children(served.proc.pid)
            assert "/uvloop/" in mapped and "/httptools/" in mapped

            # A signed webhook (standardwebhooks) leaves the frozen process.
            endpoint = c.post(
                "/v1/webhook_endpoints",
                headers=h,
                json={"url": f"{receiver.url}/hook", "events": ["wallet.topped_up"]},
            )
            assert endpoint.status_code == 201, endpoint.text
            c.post(
                "/v1/customers",
                headers=h,
                json={"external_id": "bin-w", "name": "Wallet", "prepaid": True},
            ).raise_for_status()
            c.post(
                "/v1/customers/bin-w/wallet/topup", headers=h, json={"amount_usd": 10}
            ).raise_for_status()
        [(headers, body)] = receiver.wait_for("/hook")
        event = Webhook(endpoint.json()["secret"]).verify(body, headers)
        assert event["type"] == "wallet.topped_up"

        # SIGTERM to the executable (the onefile bootloader's pid, as systemd and docker
        # send it) while a stream runs: the stream completes, the process exits 0.
        code, body_text = drained_stream(served, "bin-1", signal.SIGTERM, group=False)
        assert code == 0, served.log_text()
        assert body_text.rstrip().endswith("data: [DONE]"), body_text[-300:]

    # Spans went to the OTLP collector (flushed at the latest on the way out).
    spans = b"".join(body for _, body in receiver.received("/v1/traces"))
    assert b"ringside.reserve" in spans and b"gen_ai.request.model" in spans, served.log_text()

    # The drained stream was settled: a restart on the same data dir counts every call.
    with serve(binary, tmp_path, data) as served:
        usage = httpx.get(
            f"{served.base_url}/v1/usage", headers=served.headers(), params={"customer_id": cid}
        ).json()
        assert usage["requests"] == 3
        assert served.stop() == 0


@pytest.mark.postgres
def test_serve_on_postgresql(binary: Binary, tmp_path: Path, pg_server: Any) -> None:
    """The bundled PostgreSQL driver (psycopg with its own libpq) works from the file."""
    url = pg_server()
    with serve(binary, tmp_path, tmp_path / "data", "", "--database-url", url) as served:
        with httpx.Client(base_url=served.base_url, headers=served.headers(), timeout=30) as c:
            created = c.post(
                "/v1/customers", json={"external_id": "pg-1", "name": "PG", "budget_usd": 5}
            )
            assert created.status_code == 201, created.text
            r = c.post("/v1/chat/completions", headers={"FC-Customer": "pg-1"}, json=chat())
            assert r.status_code == 200, r.text
            usage = c.get("/v1/usage", params={"customer_id": created.json()["id"]}).json()
            assert usage["requests"] == 1 and usage["total_cost_usd"] > 0
        assert served.stop() == 0, served.log_text()


def test_ctrl_c_to_the_process_group_drains_and_exits_zero(binary: Binary, tmp_path: Path) -> None:
    """Ctrl+C reaches the bootloader and the program both; the stream still finishes."""
    with serve(binary, tmp_path, tmp_path / "data") as served:
        httpx.post(
            f"{served.base_url}/v1/customers",
            headers=served.headers(),
            json={"external_id": "bin-2", "name": "Ctrl C"},
        ).raise_for_status()
        code, body = drained_stream(served, "bin-2", signal.SIGINT, group=True)
        assert code == 0, served.log_text()
        assert body.rstrip().endswith("data: [DONE]"), served.log_text()


def test_startup_time_is_recorded(binary: Binary, tmp_path: Path) -> None:
    """exec -> /healthz answering, five cold starts (fresh data dir each). Not asserted."""
    for n in range(5):
        with serve(binary, tmp_path, tmp_path / f"data{n}") as served:
            binary.startup_s.append(served.ready_after_s)
            assert served.stop() == 0, served.log_text()
    median = statistics.median(binary.startup_s)
    samples = ", ".join(f"{s:.2f}" for s in binary.startup_s)
    print(f"\nstart-up (exec -> /healthz): median {median:.2f} s ({samples})")
    print(f"binary size: {binary.size / 1e6:.1f} MB; build {binary.build_s:.0f} s")
    if os.environ.get("RINGSIDE_RECORD_BENCH") == "1":
        record_bench(binary)


def test_demo_runs_under_a_terminal_and_quits_on_q(binary: Binary, tmp_path: Path) -> None:
    primary, secondary = os.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    args = [
        str(binary.path),
        "demo",
        "--port",
        str(free_port()),
        "--data-dir",
        str(tmp_path / "data"),
    ]
    env = bare_env(tmp_path, TERM="xterm-256color")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child becomes the executable at once
        try:
            os.close(primary)
            os.chdir(tmp_path)
            os.login_tty(secondary)  # new session, the pty as its controlling terminal
            os.execve(args[0], args, env)
        finally:
            os._exit(127)
    os.close(secondary)
    screen = bytearray()

    def read(timeout: float) -> bool:
        """False once the terminal is closed (the program exited)."""
        ready, _, _ = select.select([primary], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(primary, 1 << 16)
        except OSError:  # EIO: no process has the terminal open any more
            return False
        screen.extend(chunk)
        return bool(chunk)

    def text() -> str:
        return ANSI.sub(b"", bytes(screen)).decode(errors="replace")

    try:
        deadline = time.monotonic() + 60
        while "Margin" not in text() or "Customer" not in text():
            assert time.monotonic() < deadline, f"the dashboard never drew:\n{text()[-2000:]}"
            assert read(0.2), f"the demo exited early:\n{text()[-2000:]}"
        os.write(primary, b"q")
        deadline = time.monotonic() + 60
        while read(0.5):
            assert time.monotonic() < deadline, f"q did not quit:\n{text()[-2000:]}"
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, text()[-2000:]
    finally:
        with contextlib.suppress(ChildProcessError, ProcessLookupError):
            if os.waitpid(pid, os.WNOHANG) == (0, 0):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        os.close(primary)


def record_bench(binary: Binary) -> None:
    median = statistics.median(binary.startup_s)
    samples = ", ".join(f"{s:.2f}" for s in binary.startup_s)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    (ROOT / "bench" / "binary.md").write_text(
        f"""# The single executable: size and start-up

Written by `tests/e2e/test_binary_e2e.py` with `RINGSIDE_RECORD_BENCH=1` (CI prints the
same numbers on every run): the file built by `scripts/build_binary.sh`, run with
`PATH=/usr/bin:/bin`, an empty HOME and no Python packages reachable.

| | measured | target |
|---|---|---|
| size of `dist/ringside` | {binary.size / 1e6:.1f} MB ({binary.size} bytes) | <= 60 MB |
| exec -> `/healthz` answers 200, median of 5 | {median:.2f} s | <= 3 s |

- Start-up samples: {samples} s.
- Each sample is a cold `ringside serve` on a fresh data directory (SQLite created and
  migrated), timed from `exec` until `/healthz` answered (polled every 10 ms). It
  includes the onefile bootloader unpacking the libraries into a temp directory (about
  45 MB) and Python importing the gateway from the bundled archive.
- Machine: {machine}, shared with other jobs (load average {load}).
- Python {platform.python_version()}, PyInstaller {binary.pyinstaller}, {date.today()}.
- Build: {binary.build_s:.0f} s (clean virtualenv and PyInstaller analysis).

What keeps it small: symbols stripped from the bundled libraries (`--strip`: the
interpreter's shared library goes from 23 MB to 6 MB), and modules no code path of
Ringside reaches left out (`tkinter`, `unittest`, the websockets and `watchfiles`
support uvicorn offers, `polyfactory` and `faker`, which Litestar uses only to invent
OpenAPI examples). Without those two steps the file was 51 MB, and that was before the
`otel` extra (about 1 MB) went in.
"""
    )
