"""Per-request cost of the middleware, in-process: bare app vs wrapped app, in µs.

The apps are called directly, as a server would call them, without a test client:
WSGI with a prebuilt environ (copied per call, fresh ``wsgi.input``) and a dummy
``start_response``, the response iterated and closed; ASGI with a prebuilt scope
(copied per call) and trivial ``receive``/``send`` coroutines on one event loop.
Records go to a ``NullSink`` (the plain WSGI row: a ``MemorySink``): this measures
the request thread's part of a record, not shipping it. Times are the calling thread's
CPU time, so other processes' time slices do not count, nor does the delivery worker's
(``allin_cpu`` adds that); the worker is drained after each wrapped run, outside the
timing, so its backlog never grows.

Beside bare and wrapped, each case runs a third variant, interleaved: the same bare app
inside ``benchmarks.floor`` (the least any audit middleware must do), whose writer thread
is drained the same way and whose lines are counted against the requests.
"""

from __future__ import annotations

import asyncio
import io
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from werkzeug.test import EnvironBuilder

import audit_middleware
from audit_middleware import ASGIAuditMiddleware, AuditMiddleware
from audit_middleware import config as audit_config
from audit_middleware.capture.completion import ANONYMOUS
from audit_middleware.capture.context import bind, unbind
from audit_middleware.capture.derive import RawRequestJob
from audit_middleware.capture.recorder import finish_bound, response_begun
from audit_middleware.capture.wsgi import EnvironRequest, context_from_environ, raw_environ
from audit_middleware.frameworks.flask import AuditExtension
from audit_middleware.model.actions import CATALOG
from audit_middleware.model.event import AuditEvent
from audit_middleware.model.ids import uuid7
from audit_middleware.sinks import MemorySink
from audit_middleware.sinks.delivery import deliver
from benchmarks.apps import NullSink, flask_app, starlette_app
from benchmarks.common import (
    Result,
    Row,
    Settings,
    Table,
    count_lines,
    fmt,
    interleave,
    median,
    paired_deltas,
    quartiles,
)
from benchmarks.floor import FloorASGI, FloorJsonLines, FloorWSGI

NAME = "capture_inprocess"
TARGETS_US = {  # µs the middleware may add per request, by case (issue 12's table)
    "WSGI Flask POST /items (audited)": 5.0,
    "WSGI Flask GET / (not audited)": 1.0,
    "WSGI Flask+AuditExtension POST (audited)": 8.0,
    "WSGI plain app POST, MemorySink (audited)": 3.0,
    "WSGI plain app GET (not audited)": 1.0,
    "ASGI Starlette POST /items (audited)": 3.0,
    "ASGI Starlette GET / (not audited)": 1.0,
}
BODY = b'{"name": "web-1", "image": "nginx:1.27"}'
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
CLIENT_IP = "203.0.113.7"
REFERENCES = [
    ["Sentry SDK (published figure, comparable set-up)", "~61 µs added per request"],
    ["OpenTelemetry instrumentation (published figure)", "~120 µs added per request"],
]


# -- WSGI ------------------------------------------------------------------------------


def wsgi_environ(method: str, path: str) -> dict[str, Any]:
    """A realistic environ for one request, built once."""
    return EnvironBuilder(
        path=path,
        method=method,
        data=BODY if method == "POST" else None,
        content_type="application/json" if method == "POST" else None,
        headers=[("User-Agent", USER_AGENT), ("Accept", "*/*")],
        environ_base={"REMOTE_ADDR": CLIENT_IP, "REMOTE_PORT": "51000"},
    ).get_environ()


def _start_response(*_args: Any) -> Callable[[bytes], None]:
    return _write


def _write(data: bytes) -> None:
    pass


def wsgi_runner(app: Callable[..., Any], environ: dict[str, Any]) -> Callable[[int], int]:
    """A function making ``n`` calls of ``app`` as a WSGI server would, returning ns."""
    body = environ["wsgi.input"].read()
    perf = time.thread_time_ns
    new_input = io.BytesIO
    start_response = _start_response

    def run(n: int) -> int:
        start = perf()
        for _ in range(n):
            env = environ.copy()
            env["wsgi.input"] = new_input(body)
            response = app(env, start_response)
            for _chunk in response:
                pass
            close = getattr(response, "close", None)
            if close is not None:
                close()
        return perf() - start

    return run


def wsgi_status(app: Callable[..., Any], environ: dict[str, Any]) -> str:
    """The status line ``app`` answers ``environ`` with (a check before timing)."""
    seen: list[str] = []

    def start_response(status: str, *_rest: Any) -> Any:
        seen.append(status)
        return _write

    env = environ.copy()
    env["wsgi.input"] = io.BytesIO(BODY)
    response = app(env, start_response)
    b"".join(response)
    getattr(response, "close", lambda: None)()
    return seen[0]


# -- ASGI ------------------------------------------------------------------------------


def asgi_scope(method: str, path: str) -> dict[str, Any]:
    """A realistic HTTP scope, built once."""
    headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", USER_AGENT.encode()), (b"accept", b"*/*")]
    if method == "POST":
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": (CLIENT_IP, 51000),
        "server": ("127.0.0.1", 8000),
    }


class AsgiDriver:
    """Calls an ASGI app with a prebuilt scope on one event loop; ``runner`` returns ns."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.statuses: list[int] = []

    def runner(self, app: Callable[..., Any], scope: dict[str, Any]) -> Callable[[int], int]:
        """A function making ``n`` calls of ``app`` and returning the elapsed ns."""
        message = {
            "type": "http.request",
            "body": BODY if scope["method"] == "POST" else b"",
            "more_body": False,
        }
        perf = time.thread_time_ns

        async def receive() -> dict[str, Any]:
            return message

        async def send(msg: dict[str, Any]) -> None:
            pass

        async def batch(n: int) -> int:
            start = perf()
            for _ in range(n):
                await app(dict(scope), receive, send)
            return perf() - start

        return lambda n: self.loop.run_until_complete(batch(n))

    def status(self, app: Callable[..., Any], scope: dict[str, Any]) -> int:
        """The status ``app`` answers with (a check before timing)."""
        seen: list[int] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": BODY, "more_body": False}

        async def send(msg: dict[str, Any]) -> None:
            if msg["type"] == "http.response.start":
                seen.append(msg["status"])

        self.loop.run_until_complete(app(dict(scope), receive, send))
        return seen[0]

    def close(self) -> None:
        """Close the event loop."""
        self.loop.close()


# -- where the time goes -----------------------------------------------------------------


def _cost_us(fn: Callable[[], object], calls: int, repeats: int) -> float:
    """Best-of-``repeats`` µs per call (the floor; noise only adds)."""
    best = float("inf")
    perf = time.thread_time_ns
    for _ in range(repeats):
        start = perf()
        for _ in range(calls):
            fn()
        best = min(best, (perf() - start) / calls / 1000)
    return best


def breakdown(environ: dict[str, Any], calls: int, repeats: int) -> Table:
    """Costs of the steps of an audited WSGI request, each timed alone, by the thread they run on."""
    config = audit_config.get_config()
    sink = NullSink()
    action = CATALOG.get("create")

    def stand_in() -> EnvironRequest:
        return EnvironRequest(environ, raw_environ(environ), config, True)

    def started() -> EnvironRequest:
        request = stand_in()
        request.status, request.headers = "200 OK", []
        response_begun(request)
        return request

    def fresh() -> Any:
        context = context_from_environ(environ)
        context.status_code = 200
        return context

    def facts() -> None:
        fresh().facts()

    def decide() -> None:
        config.rules.decide("POST", "/items", None, generic_methods=config.audit_methods)

    def bind_unbind() -> None:
        unbind(bind(None))

    sample = fresh()
    request_facts = sample.facts()

    def build_event() -> None:
        AuditEvent(
            id="0192f0c8-7d4a-7c3e-8a1b-2f3c4d5e6f70",
            unix_ms=1_700_000_000_000,
            action=action,
            actor=ANONYMOUS,
            outcome="success",
            resource=None,
            request=request_facts,
        )

    event = AuditEvent(id=uuid7(), unix_ms=1, action=action, actor=ANONYMOUS, request=request_facts)

    def emit_event() -> None:
        deliver(event, sink, config.redactor)

    def finish() -> None:
        finish_bound(started())

    def derive() -> None:
        request = started()
        request.end(failed=False)
        RawRequestJob(request, 1_700_000_000_000, honest=False).events(config)

    stand_in_us = _cost_us(stand_in, calls, repeats)
    started_us = _cost_us(started, calls, repeats)
    finish_us = _cost_us(finish, calls, repeats) - started_us
    context_us = _cost_us(fresh, calls, repeats)
    audit_middleware.flush()
    steps = [
        ("request thread: copy of the keys read + stand-in (EnvironRequest)", stand_in_us),
        ("request thread: bind + unbind (ContextVar set/reset)", _cost_us(bind_unbind, calls, repeats)),
        ("request thread: response_begun (raw status kept, span noted)", started_us - stand_in_us),
        ("request thread: finish_bound (settle, RawRequestJob, enqueue)", finish_us),
        ("worker: context built from the copy (context_from_environ)", context_us),
        (
            "worker: RequestContext.facts() (client IP, request id, UA)",
            _cost_us(facts, calls, repeats) - context_us,
        ),
        ("worker: rules.decide (generic fallback, Resource)", _cost_us(decide, calls, repeats)),
        ("worker: uuid7()", _cost_us(uuid7, calls, repeats)),
        ("worker: AuditEvent(...) construction", _cost_us(build_event, calls, repeats)),
        ("worker: RawRequestJob.events, all of the above", _cost_us(derive, calls, repeats) - started_us),
        ("worker: deliver (redact + NullSink)", _cost_us(emit_event, calls, repeats)),
    ]
    return Table(
        "where the time goes: steps of an audited WSGI POST, each timed alone (best of runs)",
        ["step", "µs per call"],
        [[name, fmt(value)] for name, value in steps],
    )


# -- the benchmark ---------------------------------------------------------------------


def settled(
    runner: Callable[[int], int], drain: Callable[[], object] = audit_middleware.flush
) -> Callable[[int], int]:
    """``runner``, then its background thread drained (untimed): each run starts with no backlog."""

    def run(n: int) -> int:
        elapsed = runner(n)
        drain()
        return elapsed

    return run


def plain_wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:  # noqa: ARG001
    """The smallest WSGI app: what the middleware adds is all there is to see."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, World!"]


def _row(name: str, runs: dict[str, list[float]], *, audited: bool) -> Row:
    target = TARGETS_US[name]
    bare, wrapped = runs["bare"], runs["wrapped"]
    deltas = paired_deltas(bare, wrapped)
    low, high = quartiles(deltas)
    delta = median(deltas)
    base = median(bare)
    floor = median(paired_deltas(bare, runs["floor"]))
    return Row(
        name=name,
        unit="µs",
        baseline=base,
        measured=median(wrapped),
        delta=delta,
        ratio=median(wrapped) / base,
        target=f"<= {target:g} µs added",
        met=delta <= target,
        note=f"delta IQR {low:.1f}..{high:.1f} µs, floor {floor:+.2f} µs"
        + ("" if audited else ", no record"),
    )


def run(settings: Settings) -> Result:
    """Measure bare vs wrapped per-request cost for Flask (WSGI) and Starlette (ASGI)."""
    calls = settings.pick(200, 100)
    repeats = settings.pick(251, 31)
    result = Result(
        NAME,
        "µs per request in-process, bare vs wrapped (records into a NullSink)",
        baseline_label="bare",
        measured_label="wrapped",
        settings={"calls_per_run": calls, "runs_per_variant": repeats, "sink": "NullSink"},
    )
    sink = NullSink()
    audit_middleware.configure(sink=sink)
    checks: list[str] = []
    work = tempfile.TemporaryDirectory(prefix="capture-floor-")
    floor_writer = FloorJsonLines(Path(work.name) / "floor.jsonl")
    floor_made = 0  # requests the floor should have written a line for
    drain_floor = partial(floor_writer.flush, None)
    try:
        flask = flask_app()
        flask_ext = flask_app()
        AuditExtension(flask_ext)
        wsgi_cases: list[tuple[str, str, str, Any, Any, bool]] = [
            ("WSGI Flask POST /items (audited)", "POST", "/items", flask, AuditMiddleware(flask), True),
            ("WSGI Flask GET / (not audited)", "GET", "/", flask, AuditMiddleware(flask), False),
            ("WSGI Flask+AuditExtension POST (audited)", "POST", "/items", flask, flask_ext, True),
            ("WSGI plain app POST, MemorySink (audited)", "POST", "/items", plain_wsgi, None, True),
            ("WSGI plain app GET (not audited)", "GET", "/", plain_wsgi, AuditMiddleware(plain_wsgi), False),
        ]
        for name, method, path, bare, given, audited in wsgi_cases:
            memory = MemorySink() if given is None else None
            if memory is not None:  # the "plain WSGI POST, memory sink" row
                audit_middleware.configure(sink=memory)
            wrapped = given if given is not None else AuditMiddleware(bare)
            floor = FloorWSGI(bare, floor_writer)
            environ = wsgi_environ(method, path)
            for app in (bare, wrapped, floor):
                status = wsgi_status(app, environ)
                if not status.startswith("200"):
                    raise RuntimeError(f"{name}: the app answered {status!r}")
            audit_middleware.flush()  # the status checks' records first
            sink.count = 0
            runs = interleave(
                {
                    "bare": wsgi_runner(bare, environ),
                    "wrapped": settled(wsgi_runner(wrapped, environ)),
                    "floor": settled(wsgi_runner(floor, environ), drain_floor),
                },
                calls=calls,
                repeats=repeats,
            )
            floor_made += (repeats + 2) * calls + 1 if audited else 0  # and its status check
            got = sink.count if memory is None else len(memory.events) - 1  # less the status check's
            expected = (repeats + 2) * calls if audited else 0
            checks.append(f"{name}: {got} records for {(repeats + 2) * calls} wrapped calls")
            if got != expected:
                raise RuntimeError(f"{name}: expected {expected} records, the sink got {got}")
            if memory is not None:
                audit_middleware.configure(sink=sink)
            result.rows.append(_row(name, runs, audited=audited))
            result.data[name] = runs

        driver = AsgiDriver()
        try:
            starlette = starlette_app()
            wrapped_asgi = ASGIAuditMiddleware(starlette)
            floor_asgi = FloorASGI(starlette, floor_writer)
            for name, method, path, audited in (
                ("ASGI Starlette POST /items (audited)", "POST", "/items", True),
                ("ASGI Starlette GET / (not audited)", "GET", "/", False),
            ):
                scope = asgi_scope(method, path)
                for app in (starlette, wrapped_asgi, floor_asgi):
                    if driver.status(app, scope) != 200:
                        raise RuntimeError(f"{name}: the app did not answer 200")
                audit_middleware.flush()  # the status checks' records first
                sink.count = 0
                runs = interleave(
                    {
                        "bare": driver.runner(starlette, scope),
                        "wrapped": settled(driver.runner(wrapped_asgi, scope)),
                        "floor": settled(driver.runner(floor_asgi, scope), drain_floor),
                    },
                    calls=calls,
                    repeats=repeats,
                )
                floor_made += (repeats + 2) * calls + 1 if audited else 0  # and its status check
                expected = (repeats + 2) * calls if audited else 0
                checks.append(f"{name}: {sink.count} records for {(repeats + 2) * calls} wrapped calls")
                if sink.count != expected:
                    raise RuntimeError(f"{name}: expected {expected} records, the sink got {sink.count}")
                result.rows.append(_row(name, runs, audited=audited))
                result.data[name] = runs
        finally:
            driver.close()

        result.tables.append(
            breakdown(wsgi_environ("POST", "/items"), calls=2000, repeats=settings.pick(15, 5))
        )
        result.tables.append(
            Table(
                "spread of the paired differences (wrapped minus bare, per run)",
                ["case", "delta IQR"],
                [[row.name, row.note] for row in result.rows],
            )
        )
        result.tables.append(Table("published references (not measured here)", ["tool", "cost"], REFERENCES))
        floor_writer.close()
        floor_stored = count_lines(Path(work.name) / "floor.jsonl")
        checks.append(f"floor: {floor_stored} lines written for {floor_made} changing requests")
        if floor_stored != floor_made:
            raise RuntimeError(f"the floor wrote {floor_stored} lines for {floor_made} requests")
    finally:
        floor_writer.close()
        work.cleanup()
        audit_config.reset()
    result.notes += [
        f"{repeats} runs of {calls} calls per variant, bare and wrapped alternating; figures are medians "
        "of the runs, delta is the median of the per-run differences",
        "time = CPU time of the calling thread (time.thread_time_ns): time slices taken by other "
        "processes on this shared 2-core machine are not counted, their cache and core sharing still is",
        "ASGI POST and GET (not audited) rows show the same middleware without Flask's cost",
        "floor: benchmarks/floor.py around the same bare app, interleaved with it (the least any audit "
        "middleware must do on the request thread: a changing request's raw facts in a dict on a queue; "
        "its thread's JSON-lines writing is not timed here, as the delivery worker's is not)",
        *checks,
    ]
    return result
