"""Real-browser fixtures: Debian's Chromium driven by Playwright (never a downloaded browser).

Without ``/usr/bin/chromium`` (a machine that only ran the README's test command) browser tests skip;
with ``SWITCHBOARD_TEST_REQUIRE_SERVICES=1`` (CI) a missing Chromium is a failure instead.
Screenshots go to ``SWITCHBOARD_SCREENSHOT_DIR`` (default ``tests/browser/screenshots``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("SWITCHBOARD_TEST_CHROMIUM", "/usr/bin/chromium")
REQUIRE = os.environ.get("SWITCHBOARD_TEST_REQUIRE_SERVICES") == "1"
SCREENSHOT_DIR = Path(os.environ.get("SWITCHBOARD_SCREENSHOT_DIR", Path(__file__).parent / "screenshots"))


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """One headless Chromium for the session (sync Playwright API: browser tests are plain functions)."""
    if not Path(CHROMIUM).exists():
        if REQUIRE:
            pytest.fail(f"{CHROMIUM} not found (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def screenshot_dir() -> Path:
    """Where tests save screenshots of the states they reach."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    return SCREENSHOT_DIR
