"""Alert notifiers: the webhook POSTs JSON to a real HTTP server, failing clearly without leaking its URL."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from audit_middleware.errors import AuditValidationError
from audit_middleware.model.alerts import Alert
from audit_middleware.sinks.notify import NotifyError, WebhookNotifier

ALERT = Alert("a1", "new_api_token", "acme", {"user": "tom@acme.example", "event": "e1"}, 1.0, 1, "10m",
              "ACTIVE", 1, 2, title="New API token")  # fmt: skip


class Hook:
    """A local webhook endpoint answering ``status``; it keeps what it received."""

    def __init__(self, status: int = 204) -> None:
        self.status = status
        self.received: list[tuple[str, dict[str, str], dict]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.received.append((self.path, dict(self.headers), json.loads(body)))
                self.send_response(hook.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/SECRET"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    """A running webhook endpoint."""
    server = Hook()
    yield server
    server.close()


def test_webhook_posts_the_alert_as_json(hook: Hook):
    """The body holds one line of text and the alert's fields; the content type is JSON."""
    WebhookNotifier(hook.url, headers={"Authorization": "Bearer t"})(ALERT)
    ((path, headers, body),) = hook.received
    assert path == "/services/T000/SECRET"
    assert headers["Content-Type"] == "application/json"
    assert headers["Authorization"] == "Bearer t"
    assert body["text"].startswith("New API token [acme] user=tom@acme.example, event=e1: 1")
    assert body["alert"]["rule"] == "new_api_token"
    assert body["alert"]["key"] == {"user": "tom@acme.example", "event": "e1"}


def test_a_refusing_webhook_raises_naming_only_its_host(hook: Hook):
    """A 500 answer is a NotifyError that names the host, not the secret path."""
    hook.status = 500
    with pytest.raises(NotifyError, match=r"answered 500") as failed:
        WebhookNotifier(hook.url)(ALERT)
    assert "SECRET" not in str(failed.value)
    assert "127.0.0.1" in str(failed.value)


def test_an_unreachable_webhook_raises_clearly():
    """Nothing listening is a NotifyError saying so."""
    with pytest.raises(NotifyError, match="unreachable"):
        WebhookNotifier("http://127.0.0.1:9/x", timeout=1)(ALERT)


@pytest.mark.parametrize("url", ["ftp://hooks.example.com/x", "hooks.example.com", "http://"])
def test_a_webhook_needs_an_http_url(url: str):
    """Only http(s) URLs with a host are accepted."""
    with pytest.raises(AuditValidationError):
        WebhookNotifier(url)


def test_the_repr_hides_the_path():
    """repr() shows scheme and host only (webhook paths hold tokens)."""
    assert (
        repr(WebhookNotifier("https://hooks.example.com/T/B/secret"))
        == "WebhookNotifier('https://hooks.example.com/...')"
    )
