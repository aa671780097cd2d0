"""Cost of a structlog call with and without ``add_audit_context``, in µs per log line.

The chain is a common production one: ``merge_contextvars``, ``add_log_level``, an ISO
``TimeStamper`` and an orjson ``JSONRenderer`` writing to ``/dev/null`` through
``BytesLogger``; the wrapped chain adds ``add_audit_context`` before the renderer.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import orjson
import structlog

from audit_middleware.capture.context import bind, unbind
from audit_middleware.capture.wsgi import context_from_environ
from audit_middleware.frameworks.structlog import add_audit_context
from audit_middleware.model.event import Actor, Scope
from benchmarks.capture_inprocess import wsgi_environ
from benchmarks.common import Result, Row, Settings, interleave, median, paired_deltas, quartiles

NAME = "structlog_context"


def _logger(processors: list[Any], stream: Any) -> Any:
    return structlog.wrap_logger(
        structlog.BytesLogger(stream),
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=True,
    )


def loggers(stream: Any) -> tuple[Any, Any]:
    """The bare and the wrapped logger, same chain apart from ``add_audit_context``."""
    head = [structlog.contextvars.merge_contextvars, structlog.processors.add_log_level]
    tail = [
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.JSONRenderer(serializer=orjson.dumps),
    ]
    return _logger([*head, *tail], stream), _logger([*head, add_audit_context, *tail], stream)


def request_context() -> Any:
    """A request context as the middleware binds it, after the app named actor and tenant."""
    environ = wsgi_environ("POST", "/pods/web-1/restart")
    environ["HTTP_X_REQUEST_ID"] = "req-7f3a9c2e"
    environ["HTTP_TRACEPARENT"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    context = context_from_environ(environ)
    context.actor = Actor(id="42", name="ann", email="ann@example.com", roles=("admin",))
    context.tenant = Scope("acme")
    return context, environ


def _steady(log: Any) -> Callable[[int], int]:
    perf = time.thread_time_ns

    def run(n: int) -> int:
        start = perf()
        for i in range(n):
            log.info("pod restarted", pod="web-1", attempt=i)
        return perf() - start

    return run


def _first_line(log: Any, environ: dict[str, Any]) -> Callable[[int], int]:
    # A fresh context per line: its lazy fields (client IP, request id, trace id) are
    # resolved by the first line that needs them, as on a request's first log line.
    perf = time.thread_time_ns

    def run(n: int) -> int:
        start = perf()
        for i in range(n):
            token = bind(context_from_environ(environ))
            log.info("pod restarted", pod="web-1", attempt=i)
            unbind(token)
        return perf() - start

    return run


def run(settings: Settings) -> Result:
    """Time log lines bare vs with ``add_audit_context``, inside and outside a request."""
    calls = settings.pick(500, 200)
    repeats = settings.pick(151, 21)
    result = Result(
        NAME,
        "µs per structlog line, without vs with add_audit_context",
        baseline_label="without",
        measured_label="with",
        settings={"calls_per_run": calls, "runs_per_variant": repeats},
    )
    with open(os.devnull, "wb") as devnull:
        bare, wrapped = loggers(devnull)
        context, environ = request_context()
        cases: list[tuple[str, Callable[[Any], Callable[[int], int]], bool]] = [
            ("line inside a request (context fields cached)", _steady, True),
            ("first line of a request (lazy fields resolved)", lambda log: _first_line(log, environ), False),
            ("line outside any request", _steady, False),
        ]
        for name, make, inside in cases:
            token = bind(context) if inside else None
            try:
                runs = interleave(
                    {"bare": make(bare), "wrapped": make(wrapped)}, calls=calls, repeats=repeats
                )
            finally:
                if token is not None:
                    unbind(token)
            deltas = paired_deltas(runs["bare"], runs["wrapped"])
            low, high = quartiles(deltas)
            base = median(runs["bare"])
            result.rows.append(
                Row(
                    name,
                    "µs",
                    base,
                    median(runs["wrapped"]),
                    delta=median(deltas),
                    ratio=median(runs["wrapped"]) / base,
                    target="",
                    met=None,
                    note=f"delta IQR {low:.2f}..{high:.2f} µs",
                )
            )
            result.data[name] = runs
    result.notes += [
        "no target is set for this figure (DESIGN.md / issue 3 ask for it to be reported)",
        "time = CPU time of the calling thread; figures are medians of the runs, delta the median "
        "of the per-run differences",
        "processors: merge_contextvars, add_log_level, [add_audit_context], TimeStamper(iso, utc), "
        "JSONRenderer(orjson) -> BytesLogger(/dev/null)",
        "the 'first line' case binds a fresh RequestContext per line in both variants; its delta "
        "includes resolving client IP, request id and trace id",
        *(f"{row.name}: {row.note}" for row in result.rows),
    ]
    return result
