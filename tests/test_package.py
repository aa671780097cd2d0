"""``import audit_middleware`` is lazy: nothing heavy is loaded, and every public name resolves on use."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import audit_middleware
from tests.conftest import ROOT

HEAVY = ("werkzeug", "structlog", "opensearchpy", "sqlite3")


def test_importing_the_package_loads_nothing_heavy() -> None:
    """A fresh `import audit_middleware` loads neither werkzeug, structlog, opensearch-py nor sqlite3."""
    script = f"""
import json, sys
import audit_middleware
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout) == []


def test_the_capture_names_load_nothing_heavy_either() -> None:
    """Importing the middlewares, record() and the model loads no werkzeug, structlog or opensearch-py."""
    script = f"""
import json, sys
from audit_middleware import AuditMiddleware, ASGIAuditMiddleware, Actor, Resource, record, set_actor
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY[:3]!r})))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout) == []


def test_every_public_name_resolves_in_a_fresh_process() -> None:
    """Each name of __all__ can be imported from the package, and is the object of its home module."""
    script = """
import importlib, json
import audit_middleware
report = {}
for name in audit_middleware.__all__:
    value = getattr(audit_middleware, name)
    home = importlib.import_module(audit_middleware._EXPORTS[name])
    report[name] = value is getattr(home, name)
print(json.dumps(report))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    report = json.loads(result.stdout)
    assert set(report) == set(audit_middleware.__all__)
    assert all(report.values()), [name for name, same in report.items() if not same]


def test_all_and_the_lazy_table_agree() -> None:
    """__all__ lists exactly the lazily exported names, each once, and dir() shows them."""
    assert sorted(audit_middleware.__all__) == sorted(set(audit_middleware.__all__))
    assert set(audit_middleware.__all__) == set(audit_middleware._EXPORTS)
    assert set(audit_middleware.__all__) <= set(dir(audit_middleware))


def test_an_unknown_name_is_an_attribute_error() -> None:
    """A name the package does not export raises AttributeError naming it."""
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        audit_middleware.Nope  # noqa: B018 - the attribute access is the test


def test_a_resolved_name_is_cached_on_the_module() -> None:
    """After first use a name is a plain module attribute, so __getattr__ is not asked again."""
    value = audit_middleware.Resource
    assert vars(audit_middleware)["Resource"] is value
