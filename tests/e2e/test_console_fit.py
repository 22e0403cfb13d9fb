"""The console at 1280x800 in headless Chromium: no page scrolls sideways, and the training
form starts from the API's own defaults (read from /openapi.json)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.browser import chromium_missing_reason, console_page, launch
from tests.server import RunningServer

pytestmark = pytest.mark.skipif(
    chromium_missing_reason() is not None, reason=chromium_missing_reason() or ""
)

PAGES = {
    "playground": "[data-testid=model-select] option",
    "models": "[data-testid=models-table] >> text=Make current",
    "training": "[data-testid=train-dataset] option",
    "evaluation": "[data-testid=eval-dataset] option",
    "ollama": "[data-testid=ollama-stats] .badge",
}
WIDTH, HEIGHT = 1280, 800


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launch() as running:
        yield running


@pytest.fixture
def second_model(server: RunningServer) -> Iterator[str]:
    """A second loaded model: its row carries the widest actions (Make current)."""
    body = {"model_name": "demo-wide-row", "model_path": "demo"}
    r = httpx.post(f"{server.url}/models/load", json=body, timeout=120)
    assert r.status_code == 200, r.text
    yield body["model_name"]
    httpx.post(f"{server.url}/models/unload", params={"model_name": body["model_name"]}, timeout=60)


def test_every_page_fits_1280_pixels_without_horizontal_scrolling(
    server: RunningServer, browser: Any, second_model: str
):
    with console_page(browser, server.url) as console:
        console.page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
        for page_id, ready in PAGES.items():
            console.open(page_id)
            console.page.wait_for_selector(ready, state="attached")
            console.page.wait_for_timeout(300)  # tables render after their fetch
            sizes = console.page.evaluate(
                """() => {
                const doc = document.scrollingElement || document.documentElement;
                // Also no box scrolling sideways inside the page (a table behind a scrollbar).
                const scrolled = [...document.querySelectorAll('body *')]
                  .filter((el) => el.offsetParent !== null && el.scrollWidth > el.clientWidth + 1
                    && ['auto', 'scroll'].includes(getComputedStyle(el).overflowX))
                  .map((el) => `${el.className}: ${el.scrollWidth} > ${el.clientWidth}`);
                return {scroll: doc.scrollWidth, client: doc.clientWidth, scrolled};
            }"""
            )
            console.screenshot(f"1280-{page_id}")
            assert sizes["scroll"] <= sizes["client"], (page_id, sizes)
            assert sizes["scrolled"] == [], (page_id, sizes)
        assert console.errors == []


def _form_value(page: Any, name: str) -> float:
    return float(page.locator(f"form.train-form [name={name}]").input_value())


def test_training_form_starts_from_the_api_defaults(server: RunningServer, browser: Any):
    schema = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    fields = schema["components"]["schemas"]["TrainJobSpec"]["properties"]
    numeric = [name for name, spec in fields.items() if isinstance(spec.get("default"), int | float)
               and not isinstance(spec.get("default"), bool)]  # fmt: skip
    assert {"num_epochs", "batch_size", "learning_rate", "lora_r", "lora_alpha"} <= set(numeric)
    with console_page(browser, server.url) as console:
        console.open("training")
        console.page.wait_for_selector("[data-testid=train-dataset] option", state="attached")
        console.page.wait_for_function(
            "() => document.querySelector('form.train-form [name=num_epochs]').value !== ''"
        )
        shown = {name: _form_value(console.page, name) for name in numeric
                 if console.page.locator(f"form.train-form [name={name}]").count()}  # fmt: skip
        assert set(shown) >= {"num_epochs", "batch_size", "learning_rate", "lora_r"}
        assert shown == {name: float(fields[name]["default"]) for name in shown}
