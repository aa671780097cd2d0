"""Where alerts of the embedded store go: a user callback, or a webhook.

A notifier is any callable taking an ``Alert``; it raises to say the alert was not
delivered (the alert is then handed out again later, see ``sqlite.alerts``).
``WebhookNotifier`` POSTs the alert as JSON::

    {"text": "Multiple failed logins for one account [acme] user=ann@example.com: 6 (>= 5 in 10m), ACTIVE",
     "alert": {"id": ..., "rule": "failed_logins_per_user", "tenant": "acme", "key": {...}, ...}}

``text`` suits chat webhooks that display one field (Slack, Mattermost). Error messages
name the webhook's host only: its path often holds a secret token.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from audit_middleware import logs
from audit_middleware.errors import AuditError, AuditValidationError
from audit_middleware.model.alerts import Alert

__all__ = ["AlertNotifier", "NotifyError", "WebhookNotifier", "log_alert"]

AlertNotifier = Callable[[Alert], None]


class NotifyError(AuditError):
    """An alert could not be delivered to its notifier."""


class WebhookNotifier:
    """POST each alert as JSON to ``url`` (http or https), within ``timeout`` seconds.

    >>> WebhookNotifier("https://hooks.example.com/T000/B000/XXXX")
    WebhookNotifier('https://hooks.example.com/...')
    """

    __slots__ = ("_headers", "_host", "timeout", "url")

    def __init__(self, url: str, *, timeout: float = 5.0, headers: Mapping[str, str] | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise AuditValidationError("an alert webhook must be an http:// or https:// URL with a host")
        self.url = url
        self.timeout = timeout
        self._host = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        self._headers = {
            "Content-Type": "application/json",
            "User-Agent": "audit-middleware",
            **(headers or {}),
        }

    def __repr__(self) -> str:
        return f"WebhookNotifier({self._host + '/...'!r})"

    def __call__(self, alert: Alert) -> None:
        """Deliver one alert; raises ``NotifyError`` unless the webhook answers 2xx."""
        body = json.dumps({"text": alert.describe(), "alert": alert.to_json()}).encode("utf-8")
        request = urllib.request.Request(self.url, data=body, method="POST", headers=self._headers)  # noqa: S310 - checked above
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310 - http(s) only
                status = int(answer.status)
        except urllib.error.HTTPError as exc:
            raise NotifyError(f"alert webhook at {self._host} answered {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise NotifyError(f"alert webhook at {self._host} is unreachable: {reason}") from None
        if not 200 <= status < 300:
            raise NotifyError(f"alert webhook at {self._host} answered {status}")


def log_alert(alert: Alert) -> None:
    """Write the alert to the library's log as a warning (the default store's notifier)."""
    logs.warn(f"audit alert: {alert.describe()}", alert=alert.to_json())
