"""Hello-world apps (Flask, Starlette, Django), bare or wrapped, and the sinks the benchmarks use.

The servers started by ``server_throughput`` import this module in their workers:

    gunicorn 'benchmarks.apps:wsgi_server_app()'
    gunicorn 'benchmarks.apps:django_server_app()'
    uvicorn --factory benchmarks.apps:asgi_server_app

``BENCH_AUDIT_VARIANT`` picks ``bare`` (no middleware), ``sqlite`` (no ``configure()``:
the default store, ``AUDIT_SQLITE_PATH``, exactly as an app that only adds the
middleware gets it), ``jsonl`` (records appended to the file ``BENCH_AUDIT_JSONL``) or
``opensearch`` (an ``OpenSearchSink`` to ``BENCH_AUDIT_OPENSEARCH_URL`` with prefix
``BENCH_AUDIT_PREFIX``, spooling under ``BENCH_AUDIT_STATE_DIR``), or ``floor`` (not
audit-middleware: ``benchmarks.floor``'s minimal recorder appending to ``BENCH_AUDIT_FLOOR_JSONL``,
the least any audit middleware must do, as a reference).
"""

from __future__ import annotations

import os

from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpRequest, HttpResponse
from django.urls import path
from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import audit_middleware
from audit_middleware import ASGIAuditMiddleware, AuditMiddleware
from audit_middleware.model.event import AuditEvent
from audit_middleware.opensearch.connection import ConnectionSettings
from audit_middleware.sinks import JsonLinesSink, Sink
from audit_middleware.sinks.opensearch.sink import OpenSearchSink
from benchmarks.floor import FloorASGI, FloorJsonLines, FloorWSGI

HELLO = "Hello, World!"
VARIANTS = ("bare", "floor", "sqlite", "jsonl", "opensearch")
ENV_VARIANT = "BENCH_AUDIT_VARIANT"
ENV_JSONL = "BENCH_AUDIT_JSONL"
ENV_URL = "BENCH_AUDIT_OPENSEARCH_URL"
ENV_PREFIX = "BENCH_AUDIT_PREFIX"
ENV_STATE_DIR = "BENCH_AUDIT_STATE_DIR"
ENV_FLOOR = "BENCH_AUDIT_FLOOR_JSONL"


class NullSink(Sink):
    """Counts the records it is given and keeps nothing: the cost of making a record, not of shipping it."""

    def __init__(self) -> None:
        self.count = 0

    def emit(self, event: AuditEvent) -> None:  # noqa: ARG002 - it keeps nothing
        """Count the event."""
        self.count += 1


def flask_app() -> Flask:
    """``GET /`` (not audited) and ``POST /items`` (audited), both answering ``Hello, World!``."""
    app = Flask("bench")

    @app.get("/")
    def index() -> str:
        return HELLO

    @app.post("/items")
    def create_item() -> str:
        return HELLO

    return app


async def _hello(request: Request) -> PlainTextResponse:  # noqa: ARG001 - Starlette's endpoint signature
    return PlainTextResponse(HELLO)


def starlette_app() -> Starlette:
    """The same two routes on Starlette, with async endpoints (no thread pool)."""
    return Starlette(routes=[Route("/", _hello, methods=["GET"]), Route("/items", _hello, methods=["POST"])])


def wrapped_variant() -> bool:
    """Whether the environment asks for the audited app."""
    return os.environ.get(ENV_VARIANT, "bare") not in ("bare", "floor")


def floor_writer() -> FloorJsonLines | None:
    """The floor's writer when the environment asks for the floor variant, else None."""
    if os.environ.get(ENV_VARIANT) != "floor":
        return None
    return FloorJsonLines(os.environ[ENV_FLOOR])


def sink_from_env() -> Sink | None:
    """The sink named by the environment; None for the bare variant and for the default store."""
    variant = os.environ.get(ENV_VARIANT, "bare")
    if variant in ("bare", "sqlite"):
        return None
    if variant == "jsonl":
        return JsonLinesSink(os.environ[ENV_JSONL])
    if variant == "opensearch":
        settings = ConnectionSettings(urls=(os.environ[ENV_URL],), prefix=os.environ[ENV_PREFIX])
        return OpenSearchSink(settings=settings, state_dir=os.environ[ENV_STATE_DIR])
    raise SystemExit(f"{ENV_VARIANT} must be one of {VARIANTS}, not {variant!r}")


def wsgi_server_app() -> Flask:
    """The Flask app for gunicorn, wrapped the README's way unless the variant is ``bare``."""
    app = flask_app()
    floor = floor_writer()
    if floor is not None:
        app.wsgi_app = FloorWSGI(app.wsgi_app, floor)  # type: ignore[method-assign]
    if wrapped_variant():
        _configure()
        app.wsgi_app = AuditMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    return app


def asgi_server_app() -> Starlette | ASGIAuditMiddleware | FloorASGI:
    """The Starlette app for uvicorn, wrapped unless the variant is ``bare``."""
    app = starlette_app()
    floor = floor_writer()
    if floor is not None:
        return FloorASGI(app, floor)
    if not wrapped_variant():
        return app
    _configure()
    return ASGIAuditMiddleware(app)


def _configure() -> None:
    sink = sink_from_env()
    if sink is not None:  # else the default store, built by the first request of each worker
        audit_middleware.configure(sink=sink)


def _django_index(request: HttpRequest) -> HttpResponse:  # noqa: ARG001 - Django's view signature
    return HttpResponse(HELLO, content_type="text/plain")


urlpatterns = [path("", _django_index), path("items", _django_index)]
"""The Django app's two routes (``ROOT_URLCONF`` is this module)."""


def django_server_app() -> WSGIHandler | FloorWSGI:
    """The same routes on Django for gunicorn: the audit app and middleware unless ``bare``."""
    from django.conf import settings  # noqa: PLC0415 - configured here, in the server's worker
    from django.core.wsgi import get_wsgi_application  # noqa: PLC0415

    wrapped = wrapped_variant()
    settings.configure(
        DEBUG=False,
        SECRET_KEY="benchmark-only",
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["audit_middleware.frameworks.django"] if wrapped else [],
        MIDDLEWARE=["audit_middleware.frameworks.django.AuditMiddleware"] if wrapped else [],
        USE_TZ=True,
    )
    application = get_wsgi_application()
    if wrapped:
        _configure()
    floor = floor_writer()
    return application if floor is None else FloorWSGI(application, floor)
