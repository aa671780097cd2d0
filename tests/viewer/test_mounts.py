"""Each framework's one-line mount serves the page, an entry and the export, with links below its path."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from werkzeug.test import Client

from audit_middleware.model.event import Actor
from audit_middleware.sinks import MemorySink
from audit_middleware.viewer import Access, AuditViewer
from tests.viewer.support import Fixture, fixture


@pytest.fixture
def made(tmp_path: Path) -> Iterator[Fixture]:
    """The viewer fixture."""
    value = fixture(tmp_path)
    yield value
    value.store.close()


class Answer:
    """What a mount answered, however the client spells it."""

    def __init__(self, status: int, text: str, headers: Any) -> None:
        self.status, self.text, self.headers = status, text, headers


def _wsgi(made: Fixture, cleanups: list[Callable[[], None]]) -> Callable[..., Answer]:
    from audit_middleware.viewer.wsgi import mount_wsgi  # noqa: PLC0415

    def host(environ: Any, start_response: Any) -> list[bytes]:
        start_response("404 Not Found", [])
        return [b""]

    client = Client(mount_wsgi(host, "/audit", made.viewer))

    def call(method: str, path: str, **kwargs: Any) -> Answer:
        response = client.open(path, method=method, **kwargs)
        return Answer(response.status_code, response.get_data(as_text=True), response.headers)

    return call


def _flask(made: Fixture, cleanups: list[Callable[[], None]]) -> Callable[..., Answer]:
    flask = pytest.importorskip("flask")
    from audit_middleware.viewer.flask import audit_blueprint  # noqa: PLC0415

    app = flask.Flask("host")
    app.register_blueprint(audit_blueprint(made.viewer), url_prefix="/audit")
    client = app.test_client()

    def call(method: str, path: str, **kwargs: Any) -> Answer:
        response = client.open(path, method=method, **kwargs)
        return Answer(response.status_code, response.get_data(as_text=True), response.headers)

    return call


def _asgi_caller(app: Any) -> Callable[..., Answer]:
    def call(
        method: str, path: str, data: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> Answer:
        async def run() -> httpx.Response:
            transport = httpx.ASGITransport(app=app)
            jar = call.cookies  # type: ignore[attr-defined]
            async with httpx.AsyncClient(
                transport=transport, base_url="http://testserver", cookies=jar
            ) as client:
                response = await client.request(method, path, data=data, headers=headers)
                call.cookies.update(response.cookies)  # type: ignore[attr-defined]
                return response

        # a loop of its own in a thread: the browser tests' Playwright keeps one running in this one
        with ThreadPoolExecutor(1) as worker:
            response = worker.submit(asyncio.run, run()).result()
        return Answer(response.status_code, response.text, response.headers)

    call.cookies = {}  # type: ignore[attr-defined]
    return call


def _asgi(made: Fixture, cleanups: list[Callable[[], None]]) -> Callable[..., Answer]:
    from audit_middleware.viewer.asgi import mount_asgi  # noqa: PLC0415

    async def host(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return _asgi_caller(mount_asgi(host, "/audit", made.viewer))


def _starlette(made: Fixture, cleanups: list[Callable[[], None]]) -> Callable[..., Answer]:
    fastapi = pytest.importorskip("fastapi")
    from audit_middleware.viewer.starlette import audit_router  # noqa: PLC0415

    app = fastapi.FastAPI()
    app.mount("/audit", audit_router(made.viewer))
    return _asgi_caller(app)


def _django(made: Fixture, cleanups: list[Callable[[], None]]) -> Callable[..., Answer]:
    django = pytest.importorskip("django")
    from django.conf import settings  # noqa: PLC0415
    from django.test import Client as DjangoClient  # noqa: PLC0415
    from django.test import override_settings  # noqa: PLC0415
    from django.urls import clear_url_caches, include, path  # noqa: PLC0415

    from audit_middleware.viewer.django import audit_urls  # noqa: PLC0415

    if not settings.configured:
        settings.configure(SECRET_KEY="viewer-tests", ALLOWED_HOSTS=["testserver"], INSTALLED_APPS=[])
        django.setup()
    urls = type("urls", (), {"urlpatterns": [path("audit/", include(audit_urls(made.viewer)))]})
    # Django's own CSRF middleware is on: the viewer's view is exempt and checks its export itself.
    override = override_settings(ROOT_URLCONF=urls, MIDDLEWARE=["django.middleware.csrf.CsrfViewMiddleware"])
    override.enable()
    clear_url_caches()
    cleanups.extend([override.disable, clear_url_caches])
    client = DjangoClient(enforce_csrf_checks=True)

    def call(
        method: str, path: str, data: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> Answer:
        response = client.generic(
            method,
            path,
            data=urlencode(data or {}),
            content_type="application/x-www-form-urlencoded",
            headers=headers or {},
        )
        content = b"".join(response.streaming_content) if response.streaming else response.content
        return Answer(response.status_code, content.decode(), response.headers)

    return call


MOUNTS = {"wsgi": _wsgi, "asgi": _asgi, "flask": _flask, "starlette": _starlette, "django": _django}


@pytest.mark.parametrize("mount", list(MOUNTS))
def test_a_mount_serves_the_page_an_entry_and_the_export(made: Fixture, mount: str):
    """Page, details and export work below /audit, with the mount's own links and the CSRF cookie."""
    cleanups: list[Callable[[], None]] = []
    try:
        _exercise(MOUNTS[mount](made, cleanups), made)
    finally:
        for cleanup in cleanups:
            cleanup()


def _exercise(call: Callable[..., Answer], made: Fixture) -> None:
    page = call("GET", "/audit/?action=update")
    assert page.status == 200, page.text
    assert f'href="/audit/entries/{made.events["update"].id}?action=update"' in page.text
    assert 'src="/audit/static/viewer.js?v=' in page.text
    assert "Content-Security-Policy" in page.headers
    entry = call("GET", f"/audit/entries/{made.events['update'].id}", headers={"X-Audit-Viewer": "1"})
    assert entry.status == 200
    assert "<del>nginx:1.27</del>" in entry.text
    assert "<ins>nginx:1.28</ins>" in entry.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    exported = call("POST", "/audit/export", data={"csrf": csrf.group(1), "action": "update"})
    assert exported.status == 200, exported.text
    assert exported.text.splitlines()[1].split(",")[-2] == made.events["update"].id
    assert call("POST", "/audit/export", data={"csrf": "forged"}).status == 403
    assert call("GET", "/audit/static/viewer.css").status == 200
    assert [event.action.id for event in made.reads.events] == [
        "audit_viewed",
        "audit_viewed",
        "audit_exported",
    ]


def test_the_native_request_reaches_the_authorisation_callback(made: Fixture):
    """authorize() receives the framework's own request object (here Flask's)."""
    flask = pytest.importorskip("flask")
    from audit_middleware.viewer.flask import audit_blueprint  # noqa: PLC0415

    seen: list[Any] = []

    def authorize(request: Any) -> Access:
        seen.append(request.headers.get("X-Team"))
        return Access("acme", Actor(id="u1"))

    viewer = AuditViewer(authorize=authorize, store=made.store, sink=MemorySink())
    app = flask.Flask("host")
    app.register_blueprint(audit_blueprint(viewer), url_prefix="/logs/audit")
    assert app.test_client().get("/logs/audit/", headers={"X-Team": "ops"}).status_code == 200
    assert seen == ["ops"]
