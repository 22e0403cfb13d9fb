"""The web console in real headless Chromium against a real server process.

Every page loads without console errors; a chat answer streams into the page; a training job
on the demo dataset moves its progress bar and completes; an evaluation fills the scores
table; the models page lists the model; with API keys on, the key is asked for once and
kept, and the Ollama page works against a second real server as the upstream. Screenshots of
each page go to ``test-results/ui/`` for a reviewer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gpt_service.config import DEMO_DATA_DIR, DEMO_MODEL_DIR, DEMO_MODEL_NAME
from tests.e2e.browser import chromium_missing_reason, console_page, launch
from tests.server import RunningServer, start_server

pytestmark = pytest.mark.skipif(
    chromium_missing_reason() is not None, reason=chromium_missing_reason() or ""
)

PAGES = {
    "playground": '[data-testid=model-select] option[value="{model}"]',
    "models": "[data-testid=models-table] >> text={model}",
    "training": '[data-testid=train-dataset] option[value="{train}"]',
    "evaluation": '[data-testid=eval-dataset] option[value="{test}"]',
    "ollama": "[data-testid=ollama-stats] .badge",
}
CHAT_TOKENS = 48


@dataclass
class Site:
    server: RunningServer
    model: str
    train: str  # dataset_path values, as GET /datasets lists them
    test: str


def prepare(data_dir: Path) -> tuple[list[str], str]:
    """Server arguments and model name: the bundled demo model once it is built, else a tiny
    random Llama (same code path, other weights)."""
    if (DEMO_MODEL_DIR / "config.json").is_file():
        return [], DEMO_MODEL_NAME
    from tests.tiny_models import save_llama

    save_llama(data_dir / "models" / "tiny")
    return ["--model", "tiny", "--model-path", "models/tiny"], "tiny"


def datasets(data_dir: Path) -> tuple[str, str]:
    """The demo dataset's files once they exist, else a small one in the data directory."""
    if (DEMO_DATA_DIR / "train.jsonl").is_file() and (DEMO_DATA_DIR / "test.jsonl").is_file():
        return "train.jsonl", "test.jsonl"
    folder = data_dir / "datasets"
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"input": f"{i} 加 {i + 1} 等于几？", "expected": str(2 * i + 1)} for i in range(40)]
    for name, part in (("toy_train.jsonl", rows), ("toy_test.jsonl", rows[:8])):
        lines = (json.dumps(r, ensure_ascii=False) for r in part)
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return "datasets/toy_train.jsonl", "datasets/toy_test.jsonl"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    data_dir = tmp_path_factory.mktemp("ui-data")
    args, model = prepare(data_dir)
    train, test = datasets(data_dir)
    with start_server(data_dir, *args) as server:
        yield Site(server, model, train, test)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launch() as running:
        yield running


def test_every_page_loads_without_console_errors(site: Site, browser: Any):
    with console_page(browser, site.server.url) as console:
        for number, (page_id, ready) in enumerate(PAGES.items(), start=1):
            console.open(page_id)
            selector = ready.format(model=site.model, train=site.train, test=site.test)
            console.page.wait_for_selector(selector, state="attached")
            console.screenshot(f"{number:02d}-{page_id}")
            if page_id == "models":
                row = console.page.locator("[data-testid=models-table] tbody tr").first
                text = row.inner_text()
                assert site.model in text and "current" in text and "cpu" in text
        assert console.errors == []


def record_lengths(page: Any) -> None:
    """Record the answer's length each time the page changes it (one entry per DOM update)."""
    page.evaluate(
        """() => {
        window.lengths = [];
        const transcript = document.querySelector('[data-testid=transcript]');
        new MutationObserver(() => {
          const answers = transcript.querySelectorAll('.bubble.assistant .bubble-text');
          if (answers.length) window.lengths.push(answers[answers.length - 1].textContent.length);
        }).observe(transcript, {subtree: true, childList: true, characterData: true});
    }"""
    )


def test_chat_answer_streams_into_the_page(site: Site, browser: Any):
    with console_page(browser, site.server.url) as console:
        page = console.page
        console.open("playground")
        page.wait_for_selector(PAGES["playground"].format(model=site.model), state="attached")
        page.fill("#page-playground input[name=max_tokens]", str(CHAT_TOKENS))
        page.fill(
            "#page-playground input[name=min_tokens]", str(CHAT_TOKENS)
        )  # no early end: a long stream
        page.fill("#page-playground input[name=temperature]", "0")
        record_lengths(page)
        page.fill("[data-testid=chat-input]", "你好，请介绍一下人工智能。")
        page.click("[data-testid=chat-send]")
        page.wait_for_selector(".bubble.assistant:not(.streaming)", timeout=120_000)
        final = page.evaluate(
            "document.querySelector('.bubble.assistant .bubble-text').textContent"
        )
        lengths = page.evaluate("window.lengths")
        stats = page.inner_text("[data-testid=stats]")
        console.screenshot("chat")
    assert final.strip(), "the answer is empty"
    # Streamed, not delivered at once: the page showed a partial answer before the whole one.
    assert any(0 < n < len(final) for n in lengths), lengths
    assert lengths == sorted(lengths), "the answer only grows"
    assert f"{CHAT_TOKENS} completion tokens" in stats and "tok/s" in stats, stats
    assert console.errors == []


def test_playground_json_schema_and_tools_boxes(site: Site, browser: Any):
    schema = {
        "type": "object",
        "properties": {"city": {"enum": ["北京", "上海"]}, "days": {"type": "integer"}},
        "required": ["city", "days"],
        "additionalProperties": False,
    }
    tools = [{"name": "get_weather", "parameters": schema}]
    answers = []
    with console_page(browser, site.server.url) as console:
        page = console.page
        console.open("playground")
        page.wait_for_selector(PAGES["playground"].format(model=site.model), state="attached")
        page.fill("#page-playground input[name=max_tokens]", "100")
        for box, value, choice in (("json-schema", schema, "auto"), ("tools", tools, "required")):
            page.fill("[data-testid=json-schema]", "")
            page.fill(f"[data-testid={box}]", json.dumps(value, ensure_ascii=False))
            page.select_option("#page-playground select[name=tool_choice]", choice)
            page.fill("[data-testid=chat-input]", "北京天气？")
            page.click("[data-testid=chat-send]")
            page.wait_for_selector(
                f".bubble.assistant:nth-of-type({2 * len(answers) + 2}):not(.streaming)",
                timeout=120_000,
            )
            answers.append(page.locator(".bubble.assistant .bubble-text").last.inner_text())
        console.screenshot("structured")
    assert json.loads(answers[0])["city"] in ("北京", "上海")
    assert answers[1].startswith("→ get_weather(") and answers[1].endswith(")")
    call = json.loads(answers[1].removeprefix("→ get_weather(").removesuffix(")"))
    assert call["city"] in ("北京", "上海") and isinstance(call["days"], int)
    assert console.errors == []


def record_progress(page: Any) -> None:
    page.evaluate(
        """() => {
        window.progress = [];
        const bar = document.querySelector('[data-testid=train-progress]');
        new MutationObserver(() => window.progress.push(Number(bar.getAttribute('aria-valuenow'))))
          .observe(bar, {attributes: true, attributeFilter: ['aria-valuenow']});
    }"""
    )


def fill_training_form(page: Any, site: Site) -> None:
    page.wait_for_selector(PAGES["training"].format(train=site.train), state="attached")
    page.select_option("[data-testid=train-dataset]", site.train)
    page.fill("[data-testid=train-base]", site.model)
    page.fill("#page-training input[name=num_epochs]", "1")
    page.fill("#page-training input[name=batch_size]", "2")
    page.fill("#page-training input[name=max_steps]", "8")
    page.click("#page-training details.advanced summary")
    page.fill("#page-training input[name=max_seq_length]", "128")


def test_training_job_progress_bar_moves_and_completes(site: Site, browser: Any):
    with console_page(browser, site.server.url) as console:
        page = console.page
        console.open("training")
        fill_training_form(page, site)
        record_progress(page)
        page.click("[data-testid=train-submit]")
        # A function, not an expression string: the console's CSP forbids eval.
        page.wait_for_function(
            "() => Number(document.querySelector('[data-testid=train-progress]')"
            ".getAttribute('aria-valuenow')) > 0",
            timeout=150_000,
        )
        console.screenshot("training-running")
        page.wait_for_selector(
            "[data-testid=job-view][data-status=completed], "
            "[data-testid=job-view][data-status=failed]",
            timeout=150_000,
        )
        status = page.get_attribute("[data-testid=job-view]", "data-status")
        assert status == "completed", page.inner_text("[data-testid=job-view]")
        page.wait_for_selector("[data-testid=job-view] >> text=serving as", timeout=30_000)
        progress = page.evaluate("window.progress")
        curve = page.get_attribute("[data-testid=loss-chart] path.line.loss", "d") or ""
        history = page.inner_text("[data-testid=train-history]")
        console.screenshot("training-done")
        page.click("[data-testid=chat-with-adapter]")
        page.wait_for_selector("#page-playground:not([hidden])")
        page.wait_for_function(
            "(model) => document.querySelector('[data-testid=model-select]').value"
            ".startsWith(model + ':')",
            arg=site.model,
        )
    assert any(0 < p < 100 for p in progress), f"the bar never showed a step between: {progress}"
    assert progress[-1] == 100 and progress == sorted(progress), progress
    assert curve.count("L") >= 1, "the loss chart has fewer than two points"
    assert "completed" in history and f"{site.model}:" in history
    assert console.errors == []


def test_evaluation_page_shows_scores_and_samples(site: Site, browser: Any):
    with console_page(browser, site.server.url) as console:
        page = console.page
        console.open("evaluation")
        page.wait_for_selector(PAGES["evaluation"].format(test=site.test), state="attached")
        page.select_option("[data-testid=eval-dataset]", site.test)
        # A: the adapter trained above if it is served (the full module run), else the model;
        # B: the base model, side by side.
        choices = page.locator("[data-testid=eval-model] option").evaluate_all(
            "(options) => options.map((o) => o.value)"
        )
        adapter = next((c for c in choices if c.startswith(f"{site.model}:")), site.model)
        page.select_option("[data-testid=eval-model]", adapter)
        page.select_option("#page-evaluation select[name=model_b]", site.model)
        page.fill("#page-evaluation input[name=max_samples]", "3")
        page.fill("#page-evaluation input[name=max_tokens]", "12")
        page.click("[data-testid=eval-run]")
        page.wait_for_selector("[data-testid=eval-samples]", timeout=120_000)
        scores = page.locator("[data-testid=eval-scores] tbody tr").all_inner_texts()
        samples = page.locator("[data-testid=eval-samples] tbody tr").count()
        console.screenshot("evaluation-results")
    metrics = {row.split("\t")[0]: row.split("\t")[1:] for row in scores}
    assert set(metrics) == {"Exact match", "BLEU", "ROUGE-L", "chrF", "Perplexity"}
    assert all(len(values) == 3 and values[0] != "–" for values in metrics.values()), metrics
    assert samples == 3
    assert console.errors == []


def enter_key_when_asked(console: Any, model: str) -> None:
    page = console.page
    console.open("models")
    page.wait_for_selector("[data-testid=key-banner]:not([hidden])")
    console.screenshot("api-key-banner")
    page.fill("[data-testid=key-input]", "k1")
    page.click("[data-testid=key-save]")
    page.wait_for_selector(f"[data-testid=models-table] >> text={model}")


def pull_from_upstream(console: Any, upstream_model: str) -> str | None:
    """The upstream's state and models, then a pull with progress; the bar's final value."""
    page = console.page
    console.open("ollama")
    page.wait_for_selector("[data-testid=ollama-stats] .badge-reachable")
    page.wait_for_selector(f"[data-testid=ollama-models] >> text={upstream_model}")
    page.fill("[data-testid=pull-name]", upstream_model)
    page.click("[data-testid=pull-submit]")
    page.wait_for_selector("[data-testid=pull-status] >> text=pulled", timeout=60_000)
    return page.get_attribute("[data-testid=pull-progress]", "aria-valuenow")


def test_api_key_asked_once_and_ollama_upstream(site: Site, browser: Any, tmp_path: Path):
    # The first server is this one's Ollama upstream (it speaks Ollama's /api).
    env = {"GPT_SERVICE_API_KEYS": '["k1"]', "GPT_SERVICE_OLLAMA_BASE_URL": site.server.url}
    args, model = prepare(tmp_path / "keyed")
    with (
        start_server(tmp_path / "keyed", *args, env=env) as keyed,
        console_page(browser, keyed.url) as console,
    ):
        enter_key_when_asked(console, model)
        console.page.reload()  # the key is kept in the browser: no second prompt
        pulled = pull_from_upstream(console, site.model)
        console.screenshot("ollama")
        is_banner_hidden = console.page.is_hidden("[data-testid=key-banner]")
    assert pulled == "100" and is_banner_hidden
    assert not [e for e in console.errors if e.startswith("uncaught")], console.errors
    # The only errors are the browser's notes of the 401s before the key was entered.
    assert all("401" in e for e in console.errors), console.errors
