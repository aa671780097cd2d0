"""Screenshots of the Audit Logs page for the docs: the list, an entry's details, a filtered view, a phone.

    .venv/bin/python tools/viewer_screenshots.py          # writes docs/viewer-*.png

Runs the demo console as the browser tests do (``tests/viewer/browser.py``: Debian's
Chromium, the demo as a server process, the same older records seeded) and logs in as alice.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.viewer.browser import CHROMIUM, CHROMIUM_ARGS, demo_server  # noqa: E402
from tests.viewer.conftest import PASSWORDS, seed  # noqa: E402

DOCS = ROOT / "docs"


def main() -> int:
    """Serve the demo, take the four screenshots, stop."""
    with tempfile.TemporaryDirectory() as state, demo_server(Path(state)) as server:
        seed(server.store_path)
        with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
            browser = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=str(CHROMIUM),
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 860},
                device_scale_factor=1,
            )
            page = browser.new_page()
            page.request.post(
                f"{server.origin}/login", form={"username": "alice", "password": PASSWORDS["alice"]}
            )
            page.goto(server.page)
            page.wait_for_selector("#live-toggle:not([hidden])")
            page.screenshot(path=DOCS / "viewer-list.png")
            page.goto(server.page + "?action=update&q=web")
            page.locator("#rows > tr").first.click()
            page.locator("#entry-dialog[open]").wait_for()
            page.screenshot(path=DOCS / "viewer-details.png")
            page.goto(server.page + "?action=start-stop&type=pod&range=7d&tz=Europe%2FBerlin")
            page.wait_for_selector("#rows > tr")
            page.screenshot(path=DOCS / "viewer-filtered.png")
            page.set_viewport_size({"width": 390, "height": 844})
            page.goto(server.page)
            page.wait_for_selector("#rows > tr")
            page.screenshot(path=DOCS / "viewer-phone.png")
            browser.close()
    for name in ("list", "details", "filtered", "phone"):
        sys.stdout.write(f"{DOCS / f'viewer-{name}.png'}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
