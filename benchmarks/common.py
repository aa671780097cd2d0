"""What every benchmark shares: settings, result rows, tables, timing and load helpers."""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import structlog

DEFAULT_OPENSEARCH_URL = "http://127.0.0.1:9200"


@dataclass(frozen=True)
class Settings:
    """Options of one ``python -m benchmarks`` run."""

    quick: bool = False
    opensearch_url: str = DEFAULT_OPENSEARCH_URL

    def pick(self, full: Any, quick: Any) -> Any:
        """``full`` normally, ``quick`` under ``--quick``."""
        return quick if self.quick else full


@dataclass
class Row:
    """One figure beside its baseline, and the target it is held to (if any)."""

    name: str
    unit: str
    baseline: float | None
    measured: float | None
    delta: float | None = None
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def status(self) -> str:
        """MET / MISSED, or ``info`` for a figure without a target."""
        if self.met is None:
            return "info"
        return "MET" if self.met else "MISSED"


@dataclass
class Table:
    """A small informative table printed after a benchmark's main rows."""

    title: str
    headers: list[str]
    rows: list[list[str]]


@dataclass
class Result:
    """What one benchmark measured."""

    name: str
    title: str
    baseline_label: str = "baseline"
    measured_label: str = "measured"
    rows: list[Row] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None
    seconds: float = 0.0
    load: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (rows keep their status)."""
        out = asdict(self)
        out["rows"] = [dict(asdict(row), status=row.status) for row in self.rows]
        return out


def quiet_library_logs() -> None:
    """Send the library's own log lines (delivery degraded, ...) to stderr; figures go to stdout."""
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))


def run_by_name(name: str, settings: Settings) -> Result:
    """Run ``benchmarks.<name>`` (also the entry point of an isolated child process)."""
    quiet_library_logs()
    result: Result = importlib.import_module(f"benchmarks.{name}").run(settings)
    return result


# -- numbers -------------------------------------------------------------------------


def fmt(value: float | None, unit: str = "") -> str:
    """A figure with sensible precision and its unit."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    size = abs(value)
    if size >= 1000:
        text = f"{value:,.0f}"
    elif size >= 100:
        text = f"{value:.0f}"
    elif size >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".rstrip()


def fmt_signed(value: float | None, unit: str = "") -> str:
    """Like ``fmt`` with an explicit sign (for deltas)."""
    if value is None:
        return "-"
    text = fmt(value, unit)
    return text if text.startswith("-") else "+" + text


def fmt_ratio(value: float | None) -> str:
    """A ratio as ``0.973x``."""
    return "-" if value is None else f"{value:.3f}x"


def fmt_bytes(value: float | None) -> str:
    """Bytes in MiB (or KiB when small)."""
    if value is None:
        return "-"
    if abs(value) < 1 << 20:
        return f"{value / 1024:.1f} KiB"
    return f"{value / (1 << 20):.1f} MiB"


def median(values: Sequence[float]) -> float:
    """The median (NaN for no values)."""
    return statistics.median(values) if values else math.nan


def quartiles(values: Sequence[float]) -> tuple[float, float]:
    """First and third quartiles."""
    if len(values) < 2:
        only = values[0] if values else math.nan
        return only, only
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(0, min(len(sorted_values) - 1, math.ceil(pct / 100 * len(sorted_values)) - 1))
    return sorted_values[rank]


# -- interleaved timing ----------------------------------------------------------------


def interleave(
    variants: dict[str, Callable[[int], int]], *, calls: int, repeats: int, warmup: int = 2
) -> dict[str, list[float]]:
    """Run each variant ``repeats`` times, alternating the order, and return µs per call.

    Each variant is a function that makes ``calls`` calls and returns the elapsed
    nanoseconds. Short runs in alternating order spread the machine's drift (other
    processes, frequency changes) evenly over the variants.
    """
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name](calls)
    per_call: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(repeats):
        order = names if rep % 2 == 0 else names[::-1]
        for name in order:
            per_call[name].append(variants[name](calls) / calls / 1000)
    return per_call


def paired_deltas(baseline: Sequence[float], measured: Sequence[float]) -> list[float]:
    """Per-repetition differences (the two runs of a repetition ran back to back)."""
    return [m - b for b, m in zip(baseline, measured, strict=True)]


# -- machine load ----------------------------------------------------------------------

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _machine_busy_seconds() -> float:
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / _CLOCK_TICKS


class LoadMonitor:
    """How busy the machine was, apart from this process and its (waited-for) children.

    Figures from a 2-core machine that other work shares are only comparable when that
    other work is small; the benchmark prints what it saw. ``external_cpu`` returns the
    CPU seconds used so far by a known external helper (the OpenSearch node), so it can
    be shown separately rather than as interference.
    """

    def __init__(self, external_cpu: Callable[[], float | None] | None = None) -> None:
        self._external_cpu = external_cpu
        self._start: tuple[float, float, float, float | None] | None = None

    def _sample(self) -> tuple[float, float, float, float | None]:
        times = os.times()
        own = times.user + times.system + times.children_user + times.children_system
        external = None
        if self._external_cpu is not None:
            try:
                external = self._external_cpu()
            except Exception:  # noqa: BLE001 - only an annotation of the figures
                external = None
        return time.monotonic(), _machine_busy_seconds(), own, external

    def start(self) -> None:
        """Take the first sample."""
        self._start = self._sample()

    def stop(self) -> dict[str, Any]:
        """Averages since ``start``, in cores busy."""
        assert self._start is not None
        wall0, busy0, own0, ext0 = self._start
        wall1, busy1, own1, ext1 = self._sample()
        wall = max(wall1 - wall0, 1e-9)
        machine = (busy1 - busy0) / wall
        own = (own1 - own0) / wall
        external = None if ext0 is None or ext1 is None else (ext1 - ext0) / wall
        other = machine - own - (external or 0.0)
        return {
            "wall_seconds": round(wall, 1),
            "cores": os.cpu_count(),
            "machine_busy_cores": round(machine, 2),
            "benchmark_cores": round(own, 2),
            "opensearch_node_cores": None if external is None else round(external, 2),
            "other_cores": round(max(other, 0.0), 2),
            "loadavg_end": os.getloadavg()[0],
        }


def describe_load(load: dict[str, Any]) -> str:
    """One line about the machine's load during a benchmark."""
    if not load:
        return ""
    text = (
        f"machine: {load['cores']} cores; busy on average {load['machine_busy_cores']:.2f} cores "
        f"(this benchmark and its children {load['benchmark_cores']:.2f}"
    )
    if load.get("opensearch_node_cores") is not None:
        text += f", OpenSearch node {load['opensearch_node_cores']:.2f}"
    text += f", other processes {load['other_cores']:.2f})"
    if load["other_cores"] >= 0.25:
        text += "  <- other work shared the CPUs: expect noise"
    return text


# -- memory ----------------------------------------------------------------------------


def count_lines(path: Path) -> int:
    """The lines of a file (0 when it does not exist): the records a JSON-lines writer stored."""
    if not path.exists():
        return 0
    with open(path, "rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def count_rows(path: Path, table: str = "events") -> int:
    """The rows of ``table`` in a SQLite file (0 when it does not exist)."""
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(path)) as conn:
        count: int = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # our own table names
    return count


def rss_bytes(pid: int | str = "self") -> int:
    """Current resident set size (from /proc)."""
    return _status_kib(pid, "VmRSS:") * 1024


def peak_rss_bytes(pid: int | str = "self") -> int:
    """Peak resident set size so far (VmHWM)."""
    return _status_kib(pid, "VmHWM:") * 1024


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM (Linux >= 4.0), so a later peak is this benchmark's own."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def _status_kib(pid: int | str, key: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


# -- rendering -------------------------------------------------------------------------


def _text_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def _main_rows(result: Result) -> tuple[list[str], list[list[str]]]:
    headers = ["case", result.baseline_label, result.measured_label, "delta", "ratio", "target", "status"]
    rows = [
        [
            row.name,
            fmt(row.baseline, row.unit),
            fmt(row.measured, row.unit),
            fmt_signed(row.delta, row.unit),
            fmt_ratio(row.ratio),
            row.target or "-",
            row.status,
        ]
        for row in result.rows
    ]
    return headers, rows


def render(result: Result) -> str:
    """The benchmark's printed report: main table, extra tables, notes, machine load."""
    out = [f"== {result.name}: {result.title} ({result.seconds:.0f} s)"]
    if result.skipped:
        out.append(f"SKIPPED: {result.skipped}")
    if result.rows:
        out.append(_text_table(*_main_rows(result)))
    for table in result.tables:
        out.append("")
        out.append(f"-- {table.title}")
        out.append(_text_table(table.headers, table.rows))
    if result.notes or result.load:
        out.append("")
    out.extend(f"* {note}" for note in result.notes)
    if result.load:
        out.append(f"* {describe_load(result.load)}")
    return "\n".join(out)


def markdown(results: Sequence[Result]) -> str:
    """One Markdown table of every benchmark's main rows, for the README."""
    lines = [
        "| benchmark | case | baseline | measured | delta | ratio | target | status |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for result in results:
        if result.skipped:
            lines.append(f"| {result.name} | skipped: {result.skipped} | | | | | | |")
            continue
        for row in result.rows:
            baseline = f"{fmt(row.baseline, row.unit)} ({result.baseline_label})"
            measured = f"{fmt(row.measured, row.unit)} ({result.measured_label})"
            cells = [
                result.name,
                row.name,
                baseline,
                measured,
                fmt_signed(row.delta, row.unit),
                fmt_ratio(row.ratio),
                row.target or "-",
                row.status,
            ]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)
