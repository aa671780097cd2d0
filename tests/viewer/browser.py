"""Debian's Chromium driven by Playwright, and the demo console served as a real process.

Browser downloads do not work on the build machines, so Playwright drives
``/usr/bin/chromium`` (the ``make test`` target installs Debian's package when it is
missing). Without it a developer's run skips the browser tests; under ``CI=true`` they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

CHROMIUM = Path(os.environ.get("AUDIT_TEST_CHROMIUM", "/usr/bin/chromium"))
# Without the background-networking flags Chromium reaches out and the closed network refuses it.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SECRET = "browser-tests-viewer-secret-0123456789-abcdefghij"
POLL_SECONDS = 0.5


def require_chromium() -> Path:
    """The Chromium binary; skip without it on a laptop, fail under CI=true."""
    if CHROMIUM.is_file() and shutil.which(str(CHROMIUM)):
        return CHROMIUM
    message = f"{CHROMIUM} is missing: apt-get install chromium (make test does)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {message}")
    pytest.skip(message)


@dataclass(frozen=True)
class DemoServer:
    """The demo console serving its Audit Logs page, and the store file it writes."""

    origin: str
    store_path: Path
    links: dict[str, str]  # tenant -> signed viewer link printed by the demo

    @property
    def page(self) -> str:
        """The Audit Logs page."""
        return f"{self.origin}/audit/"


@contextmanager
def demo_server(state: Path) -> Iterator[DemoServer]:
    """``python -m integrations.demo`` on a free port, until the end of the block (then Ctrl-C).

    Its output goes to ``demo.log`` in ``state`` (a pipe nobody reads would fill and block it).
    """
    env = {**os.environ, "AUDIT_DEMO_DIR": str(state), "AUDIT_DEMO_VIEWER_SECRET": SECRET}
    env.pop("AUDIT_OPENSEARCH_URL", None)
    log = state / "demo.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "integrations.demo", "--port", "0", "--poll-interval", str(POLL_SECONDS)],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        text = ""
        deadline = time.monotonic() + 60
        while "Press Ctrl-C to stop." not in text:
            if time.monotonic() > deadline or process.poll() is not None:
                raise AssertionError("the demo did not start serving:\n" + text[-4000:])
            time.sleep(0.1)
            text = log.read_text(encoding="utf-8", errors="replace")
        origin = re.search(r"serving at (http://[\d.]+:\d+)/audit/", text)
        assert origin is not None, text
        links = dict(re.findall(r"^\s+(\w+) \(as \w+, valid 12 h\): (\S+)$", text, re.MULTILINE))
        yield DemoServer(origin.group(1), state / "demo.sqlite3", links)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
