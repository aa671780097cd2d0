"""The library's own warnings: through structlog, loaded on first use, never raising into the app."""

from __future__ import annotations

import subprocess
import sys

import pytest
import structlog
from structlog.testing import capture_logs

from audit_middleware import logs
from tests.conftest import ROOT


def test_warn_logs_a_warning_with_its_fields() -> None:
    """warn() writes one warning event with the message and the given fields."""
    with capture_logs() as captured:
        logs.warn("audit sink degraded", error="timeout", attempts=3)
    assert captured == [
        {"event": "audit sink degraded", "error": "timeout", "attempts": 3, "log_level": "warning"}
    ]


def test_a_broken_logging_setup_never_raises() -> None:
    """A processor that fails makes warn() a no-op rather than an exception in the host app."""

    def broken(logger: object, method: str, event: dict[str, object]) -> dict[str, object]:
        raise RuntimeError("logging is misconfigured")

    previous = structlog.get_config()
    structlog.configure(processors=[broken])
    try:
        logs.warn("anything", field=1)
    finally:
        structlog.configure(**previous)


@pytest.mark.parametrize("stage", ["import", "warn"])
def test_structlog_is_loaded_on_the_first_warning(stage: str) -> None:
    """Importing the module does not load structlog; the first warning does."""
    script = (
        "import sys; from audit_middleware import logs\n"
        + ("logs.warn('x')\n" if stage == "warn" else "")
        + "print('structlog' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == ("True" if stage == "warn" else "False")


def test_the_logger_is_named_audit_middleware() -> None:
    """With stdlib logging behind structlog, the warning comes from the 'audit_middleware' logger."""
    script = """
import logging, structlog
logging.basicConfig(format="%(name)s|%(levelname)s|%(message)s")
structlog.configure(
    logger_factory=structlog.stdlib.LoggerFactory(),
    wrapper_class=structlog.stdlib.BoundLogger,
    processors=[structlog.processors.KeyValueRenderer(key_order=["event"])],
)
from audit_middleware import logs
logs.warn("spool full", records=7)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stderr.strip() == "audit_middleware|WARNING|event='spool full' records=7"
