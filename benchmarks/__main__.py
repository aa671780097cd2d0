"""``python -m benchmarks [--only NAME ...] [--quick]``: run the benchmarks, print and save the figures."""

from __future__ import annotations

import argparse
import importlib
import json
import multiprocessing
import os
import platform
import sys
import time
import traceback
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.common import (
    DEFAULT_OPENSEARCH_URL,
    LoadMonitor,
    Result,
    Settings,
    markdown,
    quiet_library_logs,
    render,
    run_by_name,
)
from benchmarks.node import node_cpu_seconds, plain_client, require_loopback, unavailable

BENCHMARKS = (
    "capture_inprocess",
    "allin_cpu",
    "structlog_context",
    "server_throughput",
    "shipper_throughput",
    "request_latency_node_down",
    "memory_node_down",
    "query_stores",
    "sqlite_writer",
    "viewer_pages",
    "chain_verify",
)
NEEDS_NODE = frozenset(("shipper_throughput", "request_latency_node_down"))
# Run in a fresh process: its memory figures must not include what earlier benchmarks left behind.
ISOLATED = frozenset(("memory_node_down",))
RESULTS_DIR = Path(__file__).resolve().parent / "results"
PACKAGES = (
    "audit-middleware",
    "flask",
    "werkzeug",
    "starlette",
    "uvicorn",
    "gunicorn",
    "opensearch-py",
    "orjson",
    "structlog",
)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only this benchmark (repeatable, or comma-separated): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument("--quick", action="store_true", help="short runs: a smoke test, not figures to quote")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument(
        "--opensearch-url",
        default=DEFAULT_OPENSEARCH_URL,
        help=f"the local node (loopback only; default {DEFAULT_OPENSEARCH_URL})",
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the JSON goes")
    return parser.parse_args(argv)


def _selected(only: list[str] | None) -> list[str]:
    if not only:
        return list(BENCHMARKS)
    names = [name.strip() for item in only for name in item.split(",") if name.strip()]
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
    return [name for name in BENCHMARKS if name in names]


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _environment(settings: Settings) -> dict[str, Any]:
    versions = {package: _version(package) for package in PACKAGES}
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "packages": versions,
        "quick": settings.quick,
        "opensearch_url": settings.opensearch_url,
    }


def _run_isolated(name: str, settings: Settings) -> Result:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        result: Result = pool.apply(run_by_name, (name, settings))
    return result


def _run_one(name: str, settings: Settings) -> Result:
    module = importlib.import_module(f"benchmarks.{name}")
    node_problem = unavailable(settings.opensearch_url)
    if name in NEEDS_NODE and node_problem is not None:
        return Result(name, (module.__doc__ or name).splitlines()[0], skipped=node_problem)
    external = None
    if node_problem is None:
        client = plain_client(settings.opensearch_url)

        def external() -> float:
            return node_cpu_seconds(client)

    monitor = LoadMonitor(external)
    monitor.start()
    started = time.monotonic()
    try:
        result: Result = _run_isolated(name, settings) if name in ISOLATED else module.run(settings)
    except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others' figures
        traceback.print_exc()
        result = Result(name, "failed", skipped=f"failed: {type(exc).__name__}: {exc}")
    result.seconds = time.monotonic() - started
    result.load = monitor.stop()
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks; exit status 0 even when a target is missed (figures, not tests)."""
    args = _parse(argv)
    if args.list:
        print("\n".join(BENCHMARKS))
        return 0
    settings = Settings(quick=args.quick, opensearch_url=require_loopback(args.opensearch_url))
    quiet_library_logs()
    environment = _environment(settings)
    print(
        f"audit-middleware benchmarks ({'quick' if args.quick else 'full'}): Python {environment['python']}, "
        f"{environment['cores']} cores ({environment['cpu']}), {environment['platform']}"
    )
    results: list[Result] = []
    for name in _selected(args.only):
        print(f"\nrunning {name} ...", flush=True)
        result = _run_one(name, settings)
        results.append(result)
        print(render(result), flush=True)

    print("\n== Markdown (for the README)\n")
    print(markdown(results))

    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = args.results_dir / f"{stamp}{'-quick' if args.quick else ''}.json"
    payload = {"created": stamp, "environment": environment, "results": [r.to_json() for r in results]}
    path.write_text(json.dumps(payload, indent=2, default=str))
    print(f"\nresults written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
