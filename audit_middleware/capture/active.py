"""The process-wide slot holding the installed :class:`~audit_middleware.capture.settings.CaptureSettings`.

Apart from the settings type so that it costs nothing to import: the package's
``__init__`` registers the default factory here without loading capture, and the
first request or ``record()`` builds the default configuration (from the environment)
when nothing was installed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from audit_middleware.errors import AuditError

if TYPE_CHECKING:
    from audit_middleware.capture.settings import CaptureSettings

__all__ = ["current_settings", "install", "installed", "set_default_factory"]

_lock = threading.Lock()
_installed: CaptureSettings | None = None
_default_factory: Callable[[], CaptureSettings] | None = None


def current_settings() -> CaptureSettings:
    """The installed settings, creating the default ones on first use."""
    settings = _installed
    if settings is not None:
        return settings
    with _lock:
        if _installed is None:
            if _default_factory is None:
                raise AuditError("audit_middleware.config registers the default configuration on import")
            _install_locked(_default_factory())
        assert _installed is not None
        return _installed


def installed() -> CaptureSettings | None:
    """The installed settings, or None: never builds the default ones (and their sink)."""
    return _installed


def install(settings: CaptureSettings | None) -> CaptureSettings | None:
    """Install ``settings`` (None: back to the default on next use); returns the previous ones."""
    with _lock:
        return _install_locked(settings)


def _install_locked(settings: CaptureSettings | None) -> CaptureSettings | None:
    global _installed
    previous, _installed = _installed, settings
    return previous


def set_default_factory(factory: Callable[[], CaptureSettings]) -> None:
    """Register how the default settings are built (``audit_middleware.config`` does, on import)."""
    global _default_factory  # noqa: PLW0603 - set once at import
    _default_factory = factory
