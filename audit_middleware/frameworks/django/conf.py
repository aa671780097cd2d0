"""``settings.AUDIT_MIDDLEWARE``: read and applied with ``configure()``.

Values may be the objects themselves or dotted paths to them. A dotted ``sink`` or
``redactor`` may name a class or factory, which is called with no arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from audit_middleware.config import AuditConfig, configure
from audit_middleware.processing.redaction import Redactor
from audit_middleware.sinks import Sink

SETTING = "AUDIT_MIDDLEWARE"
ADAPTER_KEYS = frozenset({"user_mapper", "models"})
_IMPORTABLE = frozenset(
    {"sink", "redactor", "actor_resolver", "tenant_resolver", "project_resolver", "rules", "user_mapper"}
)
_BUILT = {"sink": Sink, "redactor": Redactor}


def raw_options() -> Mapping[str, Any]:
    """The setting as written (an empty mapping when it is absent)."""
    value = getattr(settings, SETTING, None)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ImproperlyConfigured(f"{SETTING} must be a dict, not {type(value).__name__}")
    return value


def option(key: str, default: Any = None) -> Any:
    """One option of the setting, with dotted paths imported."""
    options = raw_options()
    return _load(key, options[key]) if key in options else default


def core_options() -> dict[str, Any]:
    """The options meant for ``configure()`` (all but the adapter's own)."""
    return {key: _load(key, value) for key, value in raw_options().items() if key not in ADAPTER_KEYS}


def apply_settings() -> AuditConfig | None:
    """Call ``configure()`` with the setting's options; do nothing when it names none.

    Doing nothing matters: an app that calls ``configure()`` itself keeps its sink.
    """
    options = core_options()
    if not options:
        return None
    try:
        return configure(**options)
    except TypeError as exc:  # an unknown key
        raise ImproperlyConfigured(f"{SETTING}: {exc}") from exc


def _load(key: str, value: Any) -> Any:
    if not (isinstance(value, str) and key in _IMPORTABLE):
        return value
    try:
        loaded = import_string(value)
    except ImportError as exc:
        raise ImproperlyConfigured(f"{SETTING}[{key!r}]: cannot import {value!r}: {exc}") from exc
    built = _BUILT.get(key)
    if built is not None and not isinstance(loaded, built):
        loaded = loaded()
    return loaded
