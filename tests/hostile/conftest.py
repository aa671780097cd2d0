"""The hostile-input run: hypothesis profiles and the summary of its figures.

CI runs the ``hostile-ci`` profile (a few hundred cases per test). A full run::

    AUDIT_HOSTILE_PROFILE=hostile .venv/bin/python -m pytest tests/hostile -q \\
        -p no:cacheprovider --hypothesis-show-statistics

prints the figures (cases, host-app crashes, records lost, cross-tenant reads, secrets
found in stored bytes) at the end, and writes them as JSON to ``AUDIT_HOSTILE_REPORT``
when that is set.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.hostile import tally

_SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile("hostile-ci", max_examples=150, deadline=None, suppress_health_check=_SLOW)
settings.register_profile("hostile", max_examples=2500, deadline=None, suppress_health_check=_SLOW)

PROFILE = os.environ.get("AUDIT_HOSTILE_PROFILE", "hostile-ci")
if PROFILE not in ("hostile-ci", "hostile"):
    raise pytest.UsageError(f"AUDIT_HOSTILE_PROFILE must be hostile-ci or hostile, not {PROFILE!r}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print (and, with AUDIT_HOSTILE_REPORT, save) the figures of the run."""
    figures = tally.figures()
    if not figures["cases"]:
        return
    terminalreporter.section(f"hostile-input figures ({PROFILE} profile)")
    for name, value in figures.items():
        terminalreporter.write_line(f"{name}: {value}")
    report = os.environ.get("AUDIT_HOSTILE_REPORT")
    if report:
        Path(report).write_text(json.dumps({"profile": PROFILE, **figures}, indent=2) + "\n")
