"""Real servers, real signals: every record of a load is stored when the server is stopped.

Each case starts uvicorn or gunicorn on an app module written for it, drives a short POST
load from client threads that each finish their request before stopping (so the client's
count of responses is exactly what the server handled), stops the server the way an
operator or orchestrator does, and counts the stored records. A backlog is made certain
by holding the SQLite file's write lock during the load (the writer queues meanwhile),
or by an unreachable OpenSearch (the shipper backs off with records in memory), and
releasing it right before the signal.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from audit_middleware.sinks.lastresort import waiting
from audit_middleware.sinks.opensearch.spool import inspect
from tests.conftest import ROOT
from tests.spool_support import spooled_checkpoints, spooled_kinds

LOAD_SECONDS = 1.5
CLIENTS = 6

APP = textwrap.dedent(
    """
    import os

    import audit_middleware
    from audit_middleware import ASGIAuditMiddleware, AuditMiddleware

    SINK = os.environ["TEST_SINK"]
    if SINK == "opensearch":
        from audit_middleware.opensearch.connection import ConnectionSettings
        from audit_middleware.sinks.opensearch.sink import OpenSearchSink

        audit_middleware.configure(
            sink=OpenSearchSink(
                settings=ConnectionSettings(urls=("http://127.0.0.1:9",)), state_dir=os.environ["TEST_STATE"]
            )
        )
    elif SINK == "sqlite-no-signals":
        from audit_middleware.sinks.sqlite import SQLiteSink

        store = os.environ["AUDIT_SQLITE_PATH"]
        audit_middleware.configure(sink=SQLiteSink(store, install_signal_handlers=False))
    # "default": no configure(); the default sink comes from the environment


    async def plain(scope, receive, send):
        if scope["type"] != "http":
            return  # no lifespan support of its own
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})


    asgi_app = ASGIAuditMiddleware(plain)


    def wsgi(environ, start_response):
        environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]


    wsgi_app = AuditMiddleware(wsgi)
    """
)

GUNICORN_HOOK = textwrap.dedent(
    """
    import audit_middleware


    def worker_exit(server, worker):
        audit_middleware.drain()
    """
)


@dataclass
class Server:
    """A running server process and where its records go."""

    process: subprocess.Popen[bytes]
    port: int
    directory: Path

    @property
    def store(self) -> Path:
        return self.directory / "audit.sqlite3"

    @property
    def state(self) -> Path:
        return self.directory / "state"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_up(server: Server) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            _, err = server.process.communicate()
            pytest.fail(f"the server exited early: {err.decode()[-2000:]}")
        if _answers(server.port):
            return
        time.sleep(0.1)
    pytest.fail("the server did not come up")


def _answers(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        connection.request("GET", "/up")  # not audited
        connection.getresponse().read()
        connection.close()
    except OSError:
        return False
    return True


@pytest.fixture
def start(tmp_path: Path) -> Iterator[object]:
    """``start(command, sink)`` runs a server on the app module; stopped (killed) after the test."""
    (tmp_path / "app_under_test.py").write_text(APP)
    (tmp_path / "gunicorn_hook.py").write_text(GUNICORN_HOOK)
    started: list[Server] = []

    def run(command: list[str], sink: str) -> Server:
        port = _free_port()
        environment = {
            key: value for key, value in os.environ.items() if not key.startswith(("AUDIT_", "XDG_STATE"))
        }
        environment.update(
            TEST_SINK=sink,
            TEST_STATE=str(tmp_path / "state"),
            AUDIT_SQLITE_PATH=str(tmp_path / "audit.sqlite3"),
            AUDIT_FALLBACK_DIR=str(tmp_path / "fallback"),
            PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]),
        )
        arguments = [part.replace("{port}", str(port)) for part in command]
        process = subprocess.Popen(
            [sys.executable, "-m", *arguments],
            cwd=tmp_path,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        server = Server(process, port, tmp_path)
        started.append(server)
        _wait_until_up(server)
        return server

    yield run
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.communicate()


def _load(port: int, seconds: float) -> int:
    """POST from CLIENTS keep-alive clients for ``seconds``; the number of 200 responses."""
    stop = threading.Event()
    counts = [0] * CLIENTS

    def client(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while not stop.is_set():
            connection.request("POST", f"/pods/{index}", body=b'{"name": "web"}')
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                counts[index] += 1
        connection.close()

    threads = [threading.Thread(target=client, args=(index,)) for index in range(CLIENTS)]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(60)
    return sum(counts)


def _post_once(port: int) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("POST", "/pods/warm-up", body=b"{}")
    status = connection.getresponse().status
    connection.close()
    assert status == 200
    return 1


class HeldStore:
    """The store's write lock, held by the test so the server's writer queues records."""

    def __init__(self, path: Path) -> None:
        self.connection = sqlite3.connect(path, isolation_level=None, timeout=30)
        self.connection.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.connection.execute("COMMIT")
        self.connection.close()


def _stop(server: Server, signum: int) -> tuple[str, str]:
    server.process.send_signal(signum)
    out, err = server.process.communicate(timeout=60)
    return out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def _stored(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        return int(connection.execute("SELECT count(*) FROM events").fetchone()[0])


def _assert_nothing_leaked(out: str, err: str) -> None:
    assert '"event":' not in out, "records were written to standard output"
    assert "audit_middleware_undelivered" not in err
    assert "cannot open the audit store" not in err, err[-2000:]


UVICORN = ["uvicorn", "app_under_test:asgi_app", "--host", "127.0.0.1", "--port", "{port}", "--no-access-log"]
GUNICORN = ["gunicorn", "-w", "2", "-b", "127.0.0.1:{port}", "app_under_test:wsgi_app"]


@pytest.mark.parametrize(
    ("command", "signum", "sink"),
    [
        pytest.param(UVICORN, signal.SIGTERM, "default", id="uvicorn-sigterm-default-sqlite"),
        pytest.param(UVICORN, signal.SIGINT, "default", id="uvicorn-sigint-default-sqlite"),
        pytest.param(UVICORN, signal.SIGTERM, "sqlite-no-signals", id="uvicorn-lifespan-shutdown"),
        pytest.param(
            [*UVICORN, "--workers", "2"], signal.SIGTERM, "default", id="uvicorn-2-workers-new-store"
        ),
        pytest.param(GUNICORN, signal.SIGTERM, "default", id="gunicorn-sigterm-default-sqlite"),
        pytest.param(
            [*GUNICORN, "-c", "gunicorn_hook.py"], signal.SIGTERM, "default", id="gunicorn-worker-exit-hook"
        ),
    ],
)
def test_every_response_has_its_stored_record(start, command: list[str], signum: int, sink: str) -> None:
    """Records of the SQLite store's backlog are all stored when the server stops (records = responses)."""
    server = start(command, sink)
    responses = _post_once(server.port)  # the store exists from now on
    held = HeldStore(server.store)
    responses += _load(server.port, LOAD_SECONDS)
    held.release()
    out, err = _stop(server, signum)  # right away: the writer still has its queue
    _assert_nothing_leaked(out, err)
    assert responses > 100
    assert _stored(server.store) == responses
    assert waiting(server.directory / "fallback") == 0


@pytest.mark.parametrize(
    ("command", "signum"),
    [
        pytest.param(UVICORN, signal.SIGTERM, id="uvicorn-sigterm"),
        pytest.param(GUNICORN, signal.SIGTERM, id="gunicorn-sigterm"),
    ],
)
def test_records_waiting_for_opensearch_are_spooled(start, command: list[str], signum: int) -> None:
    """With OpenSearch away, what the shipper holds in memory is in the spool after the stop."""
    server = start(command, "opensearch")
    responses = _load(server.port, LOAD_SECONDS)
    out, err = _stop(server, signum)
    _assert_nothing_leaked(out, err)
    assert responses > 100
    spooled = inspect(server.state / "spool")
    assert spooled.corrupt_records == 0
    records, checkpoints = spooled_kinds(server.state / "spool")
    assert records == responses
    assert spooled.records == records + checkpoints  # the chains' checkpoints wait beside them
    ends: dict[str, int] = {}
    for checkpoint in spooled_checkpoints(server.state / "spool"):
        ends[checkpoint["chain"]] = max(ends.get(checkpoint["chain"], 0), checkpoint["last_seq"])
    assert sum(ends.values()) == records  # each worker's chain is checkpointed to its last record
