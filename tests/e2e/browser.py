"""Headless Debian Chromium driven by Playwright, for the web-console tests.

Playwright's own browser download cannot run here, so the system ``chromium`` is launched by
path. Without the background-networking flags Chromium keeps dialling Google services, which
this machine's closed network refuses.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
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
RESULTS_DIR = Path(__file__).resolve().parents[2] / "test-results" / "ui"
VIEWPORT = {"width": 1360, "height": 900}


def chromium_missing_reason() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing: install Debian's chromium (scripts/install-browser.sh)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing (pip install -e '.[dev]')"
    return None


@contextmanager
def launch() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class ConsolePage:
    """A page with every console error and uncaught exception collected."""

    page: Any
    base_url: str
    errors: list[str] = field(default_factory=list)

    def open(self, page_id: str) -> None:
        self.page.goto(f"{self.base_url}/ui/#/{page_id}")
        self.page.wait_for_selector(f"#page-{page_id}:not([hidden])")

    def screenshot(self, name: str) -> Path:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{name}.png"
        self.page.wait_for_timeout(400)  # let CSS transitions (progress bars) finish
        self.page.screenshot(path=str(path), full_page=True)
        return path


@contextmanager
def console_page(browser: Any, base_url: str) -> Iterator[ConsolePage]:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(30_000)
    wrapped = ConsolePage(page, base_url)
    page.on(
        "console",
        lambda msg: (
            wrapped.errors.append(f"console {msg.type}: {msg.text}")
            if msg.type == "error"
            else None
        ),
    )
    page.on("pageerror", lambda exc: wrapped.errors.append(f"uncaught: {exc}"))
    try:
        yield wrapped
    finally:
        context.close()
