"""Reading a report's plots, in its text and in headless Chromium (Debian's package, via Playwright).

Shared by the report tests of in-process runs (``tests/server/test_report.py``) and of Flower
Simulation Engine runs (``tests/e2e/test_report_of_simulations.py``). Every plot of a report is one
``<svg data-plot=NAME data-points=N>`` in which each drawn data point carries ``data-point``.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["CHROMIUM", "DRAWN", "chromium_page", "open_offline", "plots"]

CHROMIUM = Path("/usr/bin/chromium")

#: In the page: every plot's name, its declared points, the elements drawn as points and its size.
DRAWN = """() => [...document.querySelectorAll('svg[data-plot]')].map(s => {
  const box = s.getBoundingClientRect();
  return {plot: s.dataset.plot, points: Number(s.dataset.points),
          drawn: s.querySelectorAll('[data-point]').length, width: box.width, height: box.height};
})"""


def plots(text: str) -> list[tuple[str, int, str]]:
    """(data-plot, data-points, body) of every top-level svg of a report."""
    found = []
    pattern = r'<svg [^>]*data-plot="([^"]+)" data-points="(\d+)"[^>]*>(.*?)</svg>'
    for match in re.finditer(pattern, text, re.S):
        found.append((match.group(1), int(match.group(2)), match.group(3)))
    return found


def chromium_page() -> Iterator[Any]:
    """A Playwright page of headless Chromium, for a fixture to ``yield from``; closed after."""
    from playwright import sync_api  # the dev extra installs it: missing is a failure, not a skip

    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        pytest.fail("Debian's chromium is missing: make test and .ci/run install it as root "
                    "(apt-get install -y chromium); the browser tests need it")
    with sync_api.sync_playwright() as pw:
        executable = str(CHROMIUM) if CHROMIUM.exists() else shutil.which("chromium")
        browser = pw.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser.new_page(viewport={"width": 1100, "height": 900})
        finally:
            browser.close()


def open_offline(page: Any, path: Path) -> tuple[list[str], list[str]]:
    """Open ``path``; returns (requests refused: anything but the file, console errors)."""
    refused: list[str] = []
    errors: list[str] = []
    own = path.resolve().as_uri()

    def route(r: Any) -> None:
        if r.request.url == own:
            r.continue_()
        else:
            refused.append(r.request.url)
            r.abort()

    page.unroute("**/*")
    page.route("**/*", route)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(own)
    page.wait_for_load_state("load")
    return refused, errors
