"""/docs (Swagger UI) and /redoc render in headless Chromium with every request staying on
127.0.0.1: the scripts come from this server, not a CDN."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.browser import RESULTS_DIR, chromium_missing_reason, console_page, launch
from tests.server import RunningServer

pytestmark = pytest.mark.skipif(
    chromium_missing_reason() is not None, reason=chromium_missing_reason() or ""
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launch() as running:
        yield running


def _leaving(urls: list[str]) -> list[str]:
    """Requests to anything but this machine (data: and blob: URLs never leave it)."""
    return [
        url
        for url in urls
        if urlsplit(url).scheme not in ("data", "blob")
        and urlsplit(url).hostname not in ("127.0.0.1", "localhost")
    ]


@pytest.mark.parametrize(
    ("path", "operation"),
    [
        ("/docs", ".opblock-summary-path"),
        ("/redoc", "[data-section-id^='operation/']"),
    ],
)
def test_docs_render_with_no_request_leaving_the_machine(
    server: RunningServer, browser: Any, path: str, operation: str
):
    schema = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    expected = sum(len(ops) for ops in schema["paths"].values())
    with console_page(browser, server.url) as console:
        requested: list[str] = []
        console.page.on("request", lambda request: requested.append(request.url))
        console.page.goto(f"{server.url}{path}")
        console.page.wait_for_selector(operation, state="attached")
        console.page.wait_for_load_state("networkidle")
        listed = console.page.locator(operation).count()
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        console.page.screenshot(path=str(RESULTS_DIR / f"docs-{path.strip('/')}.png"))
        assert listed >= expected > 20, (listed, expected)
        assert _leaving(requested) == [], _leaving(requested)
        assert any("/docs/assets/" in url for url in requested)
        assert console.errors == []
