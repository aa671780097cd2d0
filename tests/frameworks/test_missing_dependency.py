"""Each adapter names the extra to install when its framework is missing.

The framework is hidden by putting None in ``sys.modules`` (Python then refuses to import
it), and the adapter module is imported afresh.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from audit_middleware.errors import MissingDependencyError


def hide(monkeypatch: pytest.MonkeyPatch, *packages: str) -> None:
    """Make the packages (and their already imported submodules) unimportable."""
    for name in list(sys.modules):
        if name in packages or name.startswith(tuple(f"{package}." for package in packages)):
            monkeypatch.setitem(sys.modules, name, None)
    for package in packages:
        monkeypatch.setitem(sys.modules, package, None)


def forget(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """Drop the adapter (and its submodules) so the next import runs it again; the test's
    end brings the originals back, in sys.modules and as attributes of their parents."""
    for name in list(sys.modules):
        if name == module or name.startswith(f"{module}."):
            parent, _, child = name.rpartition(".")
            if parent in sys.modules:
                monkeypatch.delattr(sys.modules[parent], child, raising=False)
            monkeypatch.delitem(sys.modules, name)


@pytest.mark.parametrize(
    ("adapter", "framework", "extra"),
    [
        pytest.param("audit_middleware.frameworks.flask", "flask", "flask", id="flask"),
        pytest.param("audit_middleware.frameworks.django", "django", "django", id="django"),
        pytest.param(
            "audit_middleware.frameworks.django.middleware", "django", "django", id="django-submodule"
        ),
        pytest.param("audit_middleware.frameworks.fastapi", "starlette", "fastapi", id="starlette"),
        pytest.param("audit_middleware.frameworks.sqlalchemy", "sqlalchemy", "sqlalchemy", id="sqlalchemy"),
        pytest.param("audit_middleware.frameworks.celery", "celery", "celery", id="celery"),
    ],
)
def test_missing_framework_raises_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, adapter: str, framework: str, extra: str
) -> None:
    """Importing the adapter without its framework raises MissingDependencyError naming the extra."""
    hide(monkeypatch, framework)
    forget(monkeypatch, adapter.rsplit(".middleware", 1)[0])
    with pytest.raises(
        MissingDependencyError, match=rf"install opensearch-audit-middleware\[{extra}\]"
    ) as raised:
        importlib.import_module(adapter)
    assert isinstance(raised.value, ImportError)  # `except ImportError` in user code still works
    assert isinstance(raised.value.__cause__, ImportError)


def test_flask_login_is_optional(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without flask-login the Flask adapter imports and falls back to actor_resolver."""
    pytest.importorskip("flask")
    hide(monkeypatch, "flask_login")
    forget(monkeypatch, "audit_middleware.frameworks.flask")
    module = importlib.import_module("audit_middleware.frameworks.flask")
    assert module.flask_login is None


def test_starlette_without_fastapi(monkeypatch: pytest.MonkeyPatch) -> None:
    """With Starlette but not FastAPI, install() works and only audit_actor asks for the extra."""
    pytest.importorskip("starlette")
    hide(monkeypatch, "fastapi")
    forget(monkeypatch, "audit_middleware.frameworks.fastapi")
    module = importlib.import_module("audit_middleware.frameworks.fastapi")
    module.install(module.Starlette())
    with pytest.raises(MissingDependencyError, match=r"install opensearch-audit-middleware\[fastapi\]"):
        module.audit_actor(lambda: None)


def test_core_imports_no_framework() -> None:
    """The core package never imports a framework, an ORM, Celery or OpenTelemetry itself."""
    code = (
        "import sys, audit_middleware, audit_middleware.testing, audit_middleware.frameworks.structlog; "
        "from audit_middleware import audit_context, record; "
        "import audit_middleware.capture.recorder, audit_middleware.capture.staging; "
        "print(sorted(m for m in ('flask', 'django', 'starlette', 'fastapi', 'sqlalchemy', 'celery', "
        "'opentelemetry') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
