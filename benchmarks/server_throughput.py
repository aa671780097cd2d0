"""Real servers on 127.0.0.1 under ``wrk``: requests/s and latency, bare vs wrapped.

gunicorn (2 sync workers) serves the Flask and the Django hello-world apps, and uvicorn
(2 workers with uvicorn[standard]'s uvloop and httptools, run by gunicorn's
``UvicornWorker``, see ``_command``) the Starlette one, each in up to five variants
started side by side: ``bare``; ``floor``, the least any audit middleware must do
(``benchmarks.floor``: raw facts in a dict on a queue, one thread appending JSON lines),
the reference a target is read against; wrapped with no ``configure()``, so records go
to the default SQLite store; wrapped with records appended to a JSON-lines file; and
wrapped with records shipped by ``OpenSearchSink`` into the local node (when it answers).
``wrk`` POSTs to ``/items`` (so every request makes a record) in short fixed-duration
runs, the variants taking turns. Besides requests/s it reports p50/p99 latency and the
servers' CPU time per request, read from /proc, which other work on the machine
disturbs less than requests/s. After the servers stopped (SIGTERM), every variant's
stored records are counted and must equal the responses ``wrk`` counted.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import apps
from benchmarks.capture_inprocess import BODY
from benchmarks.common import Result, Row, Settings, Table, count_lines, count_rows, fmt, median
from benchmarks.node import (
    count_documents,
    node_cpu_seconds,
    plain_client,
    temporary_layout,
    unavailable,
    unique_prefix,
    wait_until_indexing_settles,
)

NAME = "server_throughput"
KINDS = ("gunicorn", "django", "uvicorn")
TARGETS = {  # the lowest wrapped/bare ratio the project accepts, per server kind and sink
    ("gunicorn", "sqlite"): 0.90,
    ("gunicorn", "jsonl"): 0.95,
    ("django", "sqlite"): 0.90,
    ("django", "jsonl"): 0.95,
    ("uvicorn", "sqlite"): 0.60,
    ("uvicorn", "jsonl"): 0.80,
}
APPS = {
    "gunicorn": "benchmarks.apps:wsgi_server_app()",
    "django": "benchmarks.apps:django_server_app()",
    "uvicorn": "benchmarks.apps:asgi_server_app()",
}
WORKERS = 2
WRK_THREADS = 2
WRK_CONNECTIONS = 32
REPO = Path(__file__).resolve().parent.parent
INSTALL_HINT = "wrk is not installed: `apt-get install -y wrk` (Debian/Ubuntu) or `brew install wrk` (macOS)"

LUA = """
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["User-Agent"] = "wrk/4.1 audit-middleware-bench"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%%d,"duration_us":%%d,"connect":%%d,"read":%%d,"write":%%d,' ..
    '"status":%%d,"timeout":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,"max_us":%%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


@dataclass
class Server:
    """One running server variant: its process group and what its runs measured."""

    kind: str
    variant: str
    port: int
    process: subprocess.Popen[bytes]
    runs: list[dict[str, Any]] = field(default_factory=list)
    requests_total: int = 0  # warm-up included: every one of them made a record

    @property
    def label(self) -> str:
        """e.g. ``gunicorn jsonl``."""
        return f"{self.kind} {self.variant}"


def _uvicorn_stack() -> str:
    found = [name for name in ("uvloop", "httptools") if importlib.util.find_spec(name) is not None]
    return " + ".join(found) if found else "asyncio + h11 (uvicorn[standard] is not installed)"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _command(kind: str, port: int) -> list[str]:
    # uvicorn runs as gunicorn's UvicornWorker: `uvicorn --workers N` binds its socket
    # with proto 0, so asyncio leaves TCP_NODELAY off on accepted connections and
    # Starlette's two writes per response meet delayed ACKs: ~40 ms per request on
    # Linux whatever the app does, which would hide every other cost.
    worker = "uvicorn.workers.UvicornWorker" if kind == "uvicorn" else "sync"
    app = APPS[kind]
    return [
        sys.executable, "-m", "gunicorn",
        "--workers", str(WORKERS), "--worker-class", worker,
        "--bind", f"127.0.0.1:{port}", "--backlog", "2048",
        "--log-level", "warning", "--graceful-timeout", "20",
        app,
    ]  # fmt: skip


def _wait_ready(server: Server, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{server.port}/"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.label} exited with status {server.process.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as answer:
            if answer.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{server.label} did not answer on port {server.port} within {timeout:.0f} s")


def _stop(server: Server) -> None:
    """SIGTERM the server's own process group (graceful: sinks flush), SIGKILL if it hangs."""
    if server.process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGTERM)
    try:
        server.process.wait(timeout=40)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)


def session_cpu_seconds(session_id: int) -> float:
    """CPU seconds (user + system) of the live processes in a session (a server and its workers)."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                text = stat.read()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[3]) == session_id:  # field 6 of stat: the session id
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _wrk(server: Server, script: Path, seconds: float) -> dict[str, Any]:
    url = f"http://127.0.0.1:{server.port}/items"
    command = [
        "wrk", f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{seconds:g}s",
        "--timeout", "5s", "-s", str(script), url,
    ]  # fmt: skip
    answer = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True)
    line = next((line for line in answer.stdout.splitlines() if line.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary: {answer.stdout[-500:]} {answer.stderr[-500:]}")
    figures: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
    figures["rps"] = figures["requests"] / (figures["duration_us"] / 1e6)
    figures["errors"] = sum(figures[k] for k in ("connect", "read", "write", "status", "timeout"))
    return figures


@contextlib.contextmanager
def _servers(kind: str, env: dict[str, str], variants: list[str], logs: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        for variant in variants:
            port = _free_port()
            log = open(logs / f"{kind}-{variant}.log", "wb")  # noqa: SIM115 - closed with the process
            process = subprocess.Popen(
                _command(kind, port),
                cwd=logs,  # not the repo: PYTHONPATH alone decides where the code comes from
                env={**env, apps.ENV_VARIANT: variant},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            log.close()
            started.append(Server(kind, variant, port, process))
        for server in started:
            _wait_ready(server)
        yield started
    finally:
        for server in started:
            _stop(server)


def _measure(server: Server, script: Path, seconds: float, client: Any, prefix: str | None) -> None:
    cpu_before = session_cpu_seconds(server.process.pid)
    node_before = node_cpu_seconds(client) if client is not None else None
    figures = _wrk(server, script, seconds)
    figures["server_cpu_us_per_request"] = (
        (session_cpu_seconds(server.process.pid) - cpu_before) / max(figures["requests"], 1) * 1e6
    )
    if server.variant == "opensearch" and prefix is not None:
        wait_until_indexing_settles(client, prefix)  # the node's work for this run, not the next
    if node_before is not None:
        figures["node_cpu_us_per_request"] = (
            (node_cpu_seconds(client) - node_before) / max(figures["requests"], 1) * 1e6
        )
    server.runs.append(figures)
    server.requests_total += figures["requests"]
    time.sleep(1.0)


def _suite(
    kind: str, settings: Settings, work: Path, script: Path, client: Any, prefix: str | None
) -> tuple[list[Server], dict[str, Any]]:
    seconds = settings.pick(10, 3)
    rounds = settings.pick(3, 1)
    jsonl = work / f"{kind}-records.jsonl"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(REPO)) if p),
        apps.ENV_JSONL: str(jsonl),
        apps.ENV_URL: settings.opensearch_url,
        apps.ENV_STATE_DIR: str(work / f"{kind}-state"),
    }
    for name in ("AUDIT_OPENSEARCH_URL", "AUDIT_LOG_FILE"):  # the sqlite variant gets the default store
        env.pop(name, None)
    env["AUDIT_SQLITE_PATH"] = str(work / f"{kind}-audit.sqlite3")
    env["AUDIT_FALLBACK_DIR"] = str(work / f"{kind}-fallback")
    floor = work / f"{kind}-floor.jsonl"
    env[apps.ENV_FLOOR] = str(floor)
    variants = ["bare", "floor", "sqlite", "jsonl"]
    already_stored = 0
    if prefix is not None:
        already_stored = count_documents(client, prefix)
        env[apps.ENV_PREFIX] = prefix
        variants.append("opensearch")
    with _servers(kind, env, variants, work) as servers:
        for server in servers:  # warm-up: imports, first records, connections to the node
            server.requests_total += _wrk(server, script, settings.pick(2, 1))["requests"]
        for rnd in range(rounds):
            order = servers[rnd % len(servers) :] + servers[: rnd % len(servers)]
            for server in order:
                _measure(server, script, seconds, client, prefix)
    # after the servers stopped: their sinks flushed on exit
    totals = {server.variant: server.requests_total for server in servers}
    checks: dict[str, Any] = {
        "sqlite_records": count_rows(Path(env["AUDIT_SQLITE_PATH"])),
        "sqlite_requests": totals["sqlite"],
        "jsonl_records": count_lines(jsonl),
        "jsonl_requests": totals["jsonl"],
        "floor_records": count_lines(floor),
        "floor_requests": totals["floor"],
    }
    if prefix is not None:
        checks["opensearch_documents"] = count_documents(client, prefix) - already_stored
        checks["opensearch_requests"] = totals["opensearch"]
        checks["spool_bytes_left"] = _dir_bytes(work / f"{kind}-state" / "spool")
    return servers, checks


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*.log")) if path.exists() else 0


def run(settings: Settings) -> Result:
    """Start the servers, load them in turns with wrk, and compare requests/s."""
    result = Result(
        NAME,
        f"requests/s under wrk, bare vs wrapped ({WORKERS} workers per server on a 2-core machine)",
        baseline_label="bare",
        measured_label="wrapped",
    )
    if shutil.which("wrk") is None:
        result.skipped = INSTALL_HINT
        return result
    seconds, rounds = settings.pick(10, 3), settings.pick(3, 1)
    result.settings = {
        "workers_per_server": WORKERS,
        "gunicorn_worker_class": "sync",
        "uvicorn": f"gunicorn -k uvicorn.workers.UvicornWorker; {_uvicorn_stack()}",
        "wrk": f"-t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{seconds}s, POST /items",
        "rounds": rounds,
    }
    node_problem = unavailable(settings.opensearch_url)
    client = plain_client(settings.opensearch_url) if node_problem is None else None
    prefix = unique_prefix("srv") if client is not None else None
    detail: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="audit-bench-") as tmp, contextlib.ExitStack() as stack:
        if client is not None and prefix is not None:
            stack.enter_context(temporary_layout(client, prefix))
        else:
            result.notes.append(f"OpenSearch variants not run: {node_problem}")
        work = Path(tmp)
        script = work / "post.lua"
        script.write_text(LUA % BODY.decode())
        for kind in KINDS:
            servers, checks = _suite(kind, settings, work, script, client, prefix)
            bare = next(s for s in servers if s.variant == "bare")
            bare_rps = median([r["rps"] for r in bare.runs])
            for server in servers:
                rps = median([r["rps"] for r in server.runs])
                detail.append(
                    [
                        server.label,
                        fmt(rps),
                        " / ".join(fmt(r["rps"]) for r in server.runs),
                        fmt(median([r["p50_us"] / 1000 for r in server.runs]), "ms"),
                        fmt(median([r["p99_us"] / 1000 for r in server.runs]), "ms"),
                        fmt(median([r["server_cpu_us_per_request"] for r in server.runs]), "µs"),
                        fmt(median([r.get("node_cpu_us_per_request", 0.0) for r in server.runs]), "µs"),
                        str(sum(r["errors"] for r in server.runs)),
                    ]
                )
                result.data[server.label] = server.runs
                if server.variant == "bare":
                    continue
                target = TARGETS.get((kind, server.variant))
                result.rows.append(
                    Row(
                        f"{server.label}: requests/s",
                        "req/s",
                        bare_rps,
                        rps,
                        delta=rps - bare_rps,
                        ratio=rps / bare_rps,
                        target="" if target is None else f">= {target:.2f}x bare",
                        met=None if target is None else rps / bare_rps >= target,
                    )
                )
                bare_cpu = median([r["server_cpu_us_per_request"] for r in bare.runs])
                cpu = median([r["server_cpu_us_per_request"] for r in server.runs])
                result.rows.append(
                    Row(
                        f"{server.label}: server CPU per request",
                        "µs",
                        bare_cpu,
                        cpu,
                        cpu - bare_cpu,
                        cpu / bare_cpu,
                    )
                )
            result.data[f"{kind} checks"] = checks
            result.notes.append(f"{kind}: records written {checks}")
            in_flight = WRK_CONNECTIONS * (rounds + 1)  # one request per connection when each run stops
            for sink in ("floor", "sqlite", "jsonl", "opensearch"):
                if f"{sink}_requests" in checks:
                    stored = checks.get(f"{sink}_records", checks.get(f"{sink}_documents", 0))
                    answered = checks[f"{sink}_requests"]
                    result.rows.append(
                        Row(
                            f"{kind} {sink}: records stored vs responses counted by wrk",
                            "records",
                            float(answered),
                            float(stored),
                            delta=float(stored - answered),
                            target=f"equal, plus at most {in_flight} in flight",
                            met=0 <= stored - answered <= in_flight,
                        )
                    )
    result.tables.append(
        Table(
            "per variant (medians of the rounds; node CPU = OpenSearch JVM time per request)",
            [
                "server variant",
                "req/s",
                "each round",
                "p50",
                "p99",
                "server CPU/req",
                "node CPU/req",
                "errors",
            ],
            detail,
        )
    )
    result.notes += [
        f"{WORKERS} workers per server (gunicorn sync for Flask and Django; uvicorn workers under gunicorn, "
        "uvloop+httptools when uvicorn[standard] is installed), "
        f"wrk {WRK_THREADS} threads / {WRK_CONNECTIONS} connections: load generator, servers and the "
        "OpenSearch node share 2 cores",
        f"{rounds} rounds of {seconds} s per variant, variants taking turns; all variants of a server "
        "run side by side, idle when not loaded",
        "gunicorn sync workers close the connection after each response (no keep-alive); uvicorn keeps it",
        "floor: not audit-middleware but benchmarks/floor.py, the least any audit middleware must do "
        "(a changing request's raw facts in a dict on a queue, one thread appending them as JSON lines in "
        "batches): the ratio a target can be read against on this machine",
        "records vs wrk: when a wrk run ends, each of its connections may have one request the server "
        "answers (and records) after wrk stopped counting, so stored - counted is 0 to connections x runs; "
        "fewer stored than counted would be a lost record",
        "uvicorn runs as gunicorn -k uvicorn.workers.UvicornWorker: `uvicorn --workers 2` (0.54) creates its "
        "listening socket with proto 0, so asyncio never sets TCP_NODELAY and every response waits ~40 ms "
        "for a delayed ACK (measured: 23 req/s on one connection, bare app)",
    ]
    return result
