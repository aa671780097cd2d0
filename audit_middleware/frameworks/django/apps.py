"""The Django app that applies ``settings.AUDIT_MIDDLEWARE`` at start-up.

INSTALLED_APPS = [..., "audit_middleware.frameworks.django"]
"""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core.signals import setting_changed

from audit_middleware.frameworks.django.auth import connect_auth_signals
from audit_middleware.frameworks.django.changes import register_from_settings
from audit_middleware.frameworks.django.conf import SETTING, apply_settings, option

APP_NAMES = ("audit_middleware.frameworks.django", "audit_middleware.django")
"""The app's name in ``INSTALLED_APPS``, and the older name that still works."""


class AuditMiddlewareConfig(AppConfig):  # type: ignore[misc]  # Django ships no type hints
    """Applies the settings once, before any request (and again under ``override_settings``).

    At start-up rather than when the middleware is first built: that happens on the first
    request of each test client, which would undo a test's ``capture_events()``.
    """

    name = "audit_middleware.frameworks.django"
    label = "audit_middleware"
    verbose_name = "Audit middleware"

    def ready(self) -> None:
        """Apply ``settings.AUDIT_MIDDLEWARE``, register the models it names, listen to auth signals."""
        apply_settings()
        register_from_settings(option("models", ()))
        connect_auth_signals()
        setting_changed.connect(_reapply, dispatch_uid="audit_middleware.frameworks.django.reapply")


def _reapply(*, setting: str, **_kwargs: Any) -> None:
    if setting == SETTING:
        apply_settings()
        register_from_settings(option("models", ()))
