"""A/B of the proxy's upstream HTTP client: two source trees of Ringside, alternated in one sitting.

    .venv/bin/python bench/upstream_client_ab.py --a /tmp/ab-old --b /tmp/ab-new \\
        [--rounds 3] [--duration 15] [--out /tmp/ringside-bench/upstream-ab]

Each tree is a checkout of the project (for example `git worktree add /tmp/ab-old HEAD`, and
a second worktree with the change copied in). Both run on this interpreter and its installed
packages (`python -m gateway serve` with the tree as working directory, so only the
project's own code differs), headless, with full metering: SQLite in a fresh data dir, one
customer with a monthly budget, an app key, every call reserved and settled.

The upstream is the shared harness's nginx fake (`/work/shared/peers-bench/upstream.sh`,
needs `apt-get install -y nginx-light wrk curl`): JSON on 127.0.0.1:18080, SSE on :18081.
The load is wrk with the harness's `chat.lua`. Per run (a, b, a, b, ...):

  warm-up     8 connections, 3 s (not recorded)
  latency     1 connection   -> p50 / p99
  throughput  32 connections -> req/s
  streams     32 connections, SSE -> req/s

and for each recorded phase the gateway's CPU seconds (user + system, process and
descendants, from /proc) divided by the calls the ledger metered in that phase.
Prints a Markdown table of every run and the medians; writes JSON lines to --out.
Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PEERS = Path(__file__).resolve().parents[2] / "shared" / "peers-bench"
PORT = 8791
ADMIN_KEY = "bench-admin-key-0123456789abcdef"
CLK = os.sysconf("SC_CLK_TCK")
CONFIG = """
[providers.bench]
base_url = "http://127.0.0.1:18080/v1"
timeout_s = 30

[providers.benchsse]
base_url = "http://127.0.0.1:18081/v1"
timeout_s = 30

[prices."bench/gpt-4o-mini"]
input_usd_per_mtok = 0.15
output_usd_per_mtok = 0.60

[prices."benchsse/gpt-4o-mini"]
input_usd_per_mtok = 0.15
output_usd_per_mtok = 0.60

[server]
log_level = "warning"
"""


@dataclass
class Phase:
    name: str
    conns: int
    stream: bool
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    requests: int = 0
    non_2xx: int = 0
    bad_body: int = 0
    metered: int = 0
    cpu_s: float = 0.0

    @property
    def cpu_ms_per_call(self) -> float:
        return 1000 * self.cpu_s / self.metered if self.metered else float("nan")


@dataclass
class Run:
    label: str
    tree: str
    round: int
    phases: list[Phase] = field(default_factory=list)

    def phase(self, name: str) -> Phase:
        return next(p for p in self.phases if p.name == name)


# ---------------------------------------------------------------------------------- helpers
def http(method: str, path: str, key: str, body: dict[str, Any] | None = None) -> Any:
    req = urllib.request.Request(
        f"http://127.0.0.1:{PORT}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def metered() -> int:
    return int(http("GET", "/v1/usage?customer_id=cus_123", ADMIN_KEY)["requests"])


def tree_pids(root: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text(errors="replace")
            except OSError:
                continue
            ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
            kids.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def cpu_seconds(root: int) -> float:
    total = 0
    for pid in tree_pids(root):
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text(errors="replace")
            fields = stat[stat.rfind(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK


def wrk(url: str, conns: int, seconds: int, headers: list[str], env: dict[str, str]) -> Any:
    cmd = ["wrk", "-c", str(conns), "-t", "1", "-d", f"{seconds}s", "--timeout", "10s"]
    cmd += ["-s", str(PEERS / "chat.lua")]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(url)
    out = subprocess.run(
        cmd, env={**os.environ, **env}, capture_output=True, text=True, check=False
    ).stdout
    line = next((x for x in out.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result:\n{out}")
    return json.loads(line[len("BENCH_JSON ") :])


def settle() -> int:
    """The ledger's count once in-flight calls of the last phase have settled."""
    last = -1
    for _ in range(50):
        now = metered()
        if now == last:
            return now
        last = now
        time.sleep(0.1)
    return last


# ---------------------------------------------------------------------------------- one run
def start_gateway(tree: Path, work: Path) -> subprocess.Popen[bytes]:
    (work / "ringside.toml").write_text(CONFIG)
    env = {**os.environ, "RINGSIDE_ADMIN_KEY": ADMIN_KEY, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1", "--port", str(PORT)]
    cmd += ["--data-dir", str(work / "data"), "--config", str(work / "ringside.toml")]
    log = (work / "ringside.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError(f"ringside exited:\n{(work / 'ringside.log').read_text()}")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{PORT}/healthz", timeout=1).read()
            return proc
        time.sleep(0.1)
    raise RuntimeError("ringside did not become healthy")


def one_run(label: str, tree: Path, rnd: int, seconds: int) -> Run:
    run = Run(label, str(tree), rnd)
    work = Path(tempfile.mkdtemp(prefix=f"ab-{label}-"))
    proc = start_gateway(tree, work)
    try:
        http(
            "POST",
            "/v1/customers",
            ADMIN_KEY,
            {"external_id": "cus_123", "name": "Bench", "monthly_budget_usd": 1000000},
        )
        app_key = http("POST", "/v1/keys", ADMIN_KEY, {"name": "bench"})["key"]
        headers = [f"Authorization: Bearer {app_key}", "FC-Customer: cus_123"]
        url = f"http://127.0.0.1:{PORT}/v1/chat/completions"
        json_env = {"BENCH_MODEL": "fc:bench/gpt-4o-mini", "BENCH_STREAM": "0"}
        sse_env = {"BENCH_MODEL": "fc:benchsse/gpt-4o-mini", "BENCH_STREAM": "1"}
        wrk(url, 8, 3, headers, {**json_env, "BENCH_PHASE": "warmup"})
        wrk(url, 8, 2, headers, {**sse_env, "BENCH_PHASE": "warmup"})
        for phase in (
            Phase("latency", 1, False),
            Phase("throughput", 32, False),
            Phase("streams", 32, True),
        ):
            before_calls = settle()
            before_cpu = cpu_seconds(proc.pid)
            env = {**(sse_env if phase.stream else json_env), "BENCH_CONNS": str(phase.conns)}
            res = wrk(url, phase.conns, seconds, headers, {**env, "BENCH_LABEL": label})
            after_cpu = cpu_seconds(proc.pid)
            phase.metered = settle() - before_calls
            phase.cpu_s = after_cpu - before_cpu
            phase.rps, phase.requests = float(res["rps"]), int(res["requests"])
            phase.p50_ms, phase.p99_ms = float(res["lat_ms"]["p50"]), float(res["lat_ms"]["p99"])
            phase.non_2xx, phase.bad_body = int(res["non_2xx"]), int(res["bad_body"])
            run.phases.append(phase)
            print(
                f"  {label} r{rnd} {phase.name:10} c={phase.conns:<2} {phase.rps:8.1f} req/s "
                f"p50 {phase.p50_ms:7.3f} ms p99 {phase.p99_ms:7.3f} ms "
                f"cpu {phase.cpu_ms_per_call:.3f} ms/call metered {phase.metered} "
                f"non-2xx {phase.non_2xx} bad {phase.bad_body}",
                flush=True,
            )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    return run


def direct_p50(seconds: int) -> float:
    res = wrk("http://127.0.0.1:18080/v1/chat/completions", 1, seconds, [], {"BENCH_STREAM": "0"})
    return float(res["lat_ms"]["p50"])


# ---------------------------------------------------------------------------------- report
def report(runs: list[Run], direct: list[float], labels: dict[str, str]) -> str:
    rows = [
        "| run | tree | p50 @1 (ms) | req/s @32 | CPU ms/call @32 | streams req/s @32 "
        "| CPU ms/call streams | non-2xx |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lat, tput, st = r.phase("latency"), r.phase("throughput"), r.phase("streams")
        errors = sum(p.non_2xx + p.bad_body for p in r.phases)
        rows.append(
            f"| {r.round} | {r.label} | {lat.p50_ms:.3f} | {tput.rps:.0f} | "
            f"{tput.cpu_ms_per_call:.3f} | {st.rps:.0f} | {st.cpu_ms_per_call:.3f} | {errors} |"
        )
    med = statistics.median
    d50 = med(direct) if direct else 0.0
    rows += ["", f"direct to nginx, p50 @1: median {d50:.3f} ms over {len(direct)} runs", ""]
    rows += [
        "| median | p50 @1 (ms) | added p50 @1 (ms) | req/s @32 | CPU ms/call @32 "
        "| streams req/s @32 | CPU ms/call streams |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, name in labels.items():
        mine = [r for r in runs if r.label == label]
        if not mine:
            continue
        p50 = med(r.phase("latency").p50_ms for r in mine)
        rows.append(
            f"| {label} ({name}) | {p50:.3f} | {p50 - d50:.3f} | "
            f"{med(r.phase('throughput').rps for r in mine):.0f} | "
            f"{med(r.phase('throughput').cpu_ms_per_call for r in mine):.3f} | "
            f"{med(r.phase('streams').rps for r in mine):.0f} | "
            f"{med(r.phase('streams').cpu_ms_per_call for r in mine):.3f} |"
        )
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", type=Path, required=True, help="tree A (the baseline)")
    ap.add_argument("--b", type=Path, required=True, help="tree B (the change)")
    ap.add_argument("--a-name", default="httpx")
    ap.add_argument("--b-name", default="aiohttp")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=15, help="seconds per recorded phase")
    ap.add_argument("--out", type=Path, default=Path("/tmp/ringside-bench/upstream-ab"))
    args = ap.parse_args()
    for tool in ("wrk", "nginx", "curl"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            sys.exit(f"{tool} not found: apt-get install -y nginx-light wrk curl")
    was_running = (
        subprocess.run([str(PEERS / "upstream.sh"), "status"], capture_output=True).returncode == 0
    )
    subprocess.run([str(PEERS / "upstream.sh"), "start"], check=True)
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "runs.jsonl"
    labels = {"A": args.a_name, "B": args.b_name}
    trees = {"A": args.a.resolve(), "B": args.b.resolve()}
    runs: list[Run] = []
    direct: list[float] = []
    print(f"A = {trees['A']} ({args.a_name}), B = {trees['B']} ({args.b_name})", flush=True)
    try:
        for rnd in range(1, args.rounds + 1):
            direct.append(direct_p50(5))
            for label in ("A", "B"):
                run = one_run(label, trees[label], rnd, args.duration)
                runs.append(run)
                with results.open("a") as f:
                    f.write(json.dumps({**asdict(run), "name": labels[label]}) + "\n")
    finally:
        if not was_running:
            subprocess.run([str(PEERS / "upstream.sh"), "stop"], check=False)
    table = report(runs, direct, labels)
    (args.out / "report.md").write_text(table + "\n")
    print()
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
