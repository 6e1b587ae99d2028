"""Debian's Chromium for the browser tests (test_web_ui.py, test_studio.py): where it is, the
flags it needs here, and where screenshots go."""

import os
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("QUIVER_CHROMIUM", "/usr/bin/chromium")
SHOTS = os.environ.get("QUIVER_UI_SCREENSHOTS")
# The flags the machines' Chromium needs as root on a closed network (see the env notes).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def launch(playwright):
    """Headless Chromium from Debian's package through Playwright; fails (does not skip) when
    it is missing."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's chromium package "
                    "(.ci/run does), or set QUIVER_CHROMIUM")
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def screenshot(page, name):
    """Saves a full-page screenshot as `$QUIVER_UI_SCREENSHOTS/<name>.png` when that is set."""
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)
