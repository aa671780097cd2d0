"""Draining buffering sinks: signal handlers chained to the previous ones, persist, drain, atexit."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from audit_middleware.query.model import AuditQuery
from audit_middleware.query.sqlite_store import SQLiteStore
from audit_middleware.sinks import shutdown
from audit_middleware.sinks.sqlite import SQLiteSink
from tests.conftest import ROOT
from tests.query.conftest import make_event

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time
    from audit_middleware.sinks.sqlite import SQLiteSink
    from tests.query.conftest import make_event

    previous = sys.argv[2]
    if previous == "python":
        signal.signal(signal.SIGTERM, lambda signum, frame: print("previous handler ran", flush=True))
    elif previous == "ignore":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sink = SQLiteSink(sys.argv[1])
    sink.write([make_event("create")])  # the store exists
    held = __import__("sqlite3").connect(sys.argv[1], isolation_level=None)
    held.execute("BEGIN IMMEDIATE")  # the writer queues while we emit
    for n in range(500):
        sink.emit(make_event("create", ago_ms=n + 1))
    held.execute("COMMIT")
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.5)
    print("survived", flush=True)
    """
)


def _run(tmp_path: Path, previous: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "audit.sqlite3"), previous],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "AUDIT_FALLBACK_DIR": str(tmp_path / "fb")},
    )


def _count(path: Path) -> int:
    with SQLiteStore(path) as store:
        return store.count(AuditQuery(tenant="acme"))


def test_sigterm_with_the_default_action_stores_the_queue_and_still_kills(tmp_path: Path) -> None:
    """SIGTERM with no handler before ours: the queue is stored, then the process dies of SIGTERM."""
    result = _run(tmp_path, "default")
    assert result.returncode == -signal.SIGTERM, result.stderr
    assert "survived" not in result.stdout
    assert _count(tmp_path / "audit.sqlite3") == 501


def test_sigterm_is_chained_to_the_previous_handler(tmp_path: Path) -> None:
    """An app's own SIGTERM handler still runs, after the queue is stored; it decides what follows."""
    result = _run(tmp_path, "python")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["previous handler ran", "survived"]
    assert _count(tmp_path / "audit.sqlite3") == 501


def test_an_ignored_sigterm_stays_ignored(tmp_path: Path) -> None:
    """SIG_IGN before ours: the queue is stored and the process goes on."""
    result = _run(tmp_path, "ignore")
    assert result.returncode == 0, result.stderr
    assert "survived" in result.stdout
    assert _count(tmp_path / "audit.sqlite3") == 501


def test_after_persist_records_are_written_at_once(tmp_path: Path) -> None:
    """persist() writes the queue, and later records are stored before emit returns."""
    sink = SQLiteSink(tmp_path / "audit.sqlite3", install_signal_handlers=False)
    try:
        sink.emit(make_event("create"))
        assert sink.persist(timeout=10)
        late = make_event("update")
        sink.emit(late)
        with SQLiteStore(tmp_path / "audit.sqlite3") as store:
            assert store.get("acme", late.id) is not None
            assert store.count(AuditQuery(tenant="acme")) == 2
    finally:
        sink.close()


def test_drain_persists_and_flushes_every_watched_sink(tmp_path: Path) -> None:
    """drain() returns once every watched sink holds nothing in memory."""
    sinks = [SQLiteSink(tmp_path / f"s{n}.sqlite3", install_signal_handlers=False) for n in range(2)]
    try:
        for sink in sinks:
            for n in range(100):
                sink.emit(make_event("create", ago_ms=n))
        assert shutdown.drain(timeout=10)
        assert [_count(sink.path) for sink in sinks] == [100, 100]
    finally:
        for sink in sinks:
            sink.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_handlers_are_installed_in_front_of_the_previous_ones(
    tmp_path: Path, signum: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sink started in the main thread puts our handler in front of the server's, kept to chain to
    (as when a forked worker has replaced its parent's handlers)."""
    before = signal.getsignal(signum)

    def servers_handler(number: int, frame: object) -> None:
        """Stands for uvicorn's or gunicorn's handler."""

    signal.signal(signum, servers_handler)
    monkeypatch.setattr(shutdown, "_previous", {})
    sink = SQLiteSink(tmp_path / "audit.sqlite3")
    try:
        sink.emit(make_event("create"))  # the writer starts: handlers are checked again
        assert signal.getsignal(signum) is shutdown._on_signal
        assert shutdown._previous[signum] is servers_handler
    finally:
        sink.close()
        signal.signal(signum, before)  # leave the test process as it was
