"""The demo tasks end to end: the bundled model learns each bundled task from its dataset.

With the default hyperparameters, ``POST /train`` must lift greedy exact match on the held-out
split by at least 50 points over the base model: 喵语复述 (``train.jsonl``/``test.jsonl``,
measured here over ``/chat``: the chat template, as in training, all requests at once so the
engine batches them), and the note and tag tasks (``note_*.jsonl``: a sentence into a
template; ``tag_*.jsonl``: ``#`` before each word of random characters, which needs the copying
the build teaches), both absent from the model's pretraining; measured with ``POST /evaluate``
of ``demo`` and ``demo:<task>``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator

import httpx
import pytest

from gpt_service.config import DEMO_DATA_DIR, DEMO_MODEL_DIR
from tests.server import RunningServer, start_server

logger = logging.getLogger(__name__)

pytestmark = pytest.mark.skipif(
    not (DEMO_MODEL_DIR / "config.json").is_file()
    or not (DEMO_DATA_DIR / "note_test.jsonl").is_file(),
    reason="the bundled demo model/data are not built (make demo-model)",
)


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("demo-train")) as running:
        yield running


def held_out() -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in (DEMO_DATA_DIR / "test.jsonl").read_text().splitlines()]
    return [(f"{r['instruction']}\n{r['input']}", r["output"]) for r in rows]


async def exact_match(url: str, model: str, cases: list[tuple[str, str]]) -> float:
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:

        async def answer(prompt: str) -> str:
            body = {"model_name": model, "messages": [{"role": "user", "content": prompt}]}
            response = await client.post("/chat", json={**body, "max_tokens": 40, "temperature": 0})
            response.raise_for_status()
            return response.json()["text"].strip()

        answers = await asyncio.gather(*(answer(prompt) for prompt, _ in cases))
    hits = sum(a == expected.strip() for a, (_, expected) in zip(answers, cases, strict=True))
    return 100.0 * hits / len(cases)


def train_with_defaults(url: str, dataset: str, output_dir: str) -> tuple[dict, float]:
    """POST /train at the API defaults (served on completion); the final status, seconds."""
    with httpx.Client(base_url=url, timeout=60) as api:
        started = time.monotonic()
        body = {"base_model": "demo", "dataset_path": dataset, "load_on_completion": True}
        response = api.post("/train", json={**body, "output_dir": output_dir})
        assert response.status_code == 200, response.text
        task_id = response.json()["task_id"]
        while (status := api.get(f"/train/status/{task_id}").json())["status"] in (
            "queued",
            "running",
        ):
            time.sleep(1)
    assert status["status"] == "completed", status["error"]
    return status, time.monotonic() - started


def evaluate_exact_match(url: str, model: str, dataset: str) -> float:
    """POST /evaluate (exact match only) and poll its results; percent."""
    with httpx.Client(base_url=url, timeout=60) as api:
        body = {"model_name": model, "dataset_path": dataset, "metrics": ["exact_match"]}
        response = api.post("/evaluate", json={**body, "max_tokens": 40})
        assert response.status_code == 200, response.text
        eval_id = response.json()["eval_id"]
        while (results := api.get(f"/evaluate/results/{eval_id}").json())["status"] in (
            "queued",
            "running",
        ):
            time.sleep(0.5)
    assert results["status"] == "completed", results
    return 100.0 * results["scores"]["exact_match"]


def test_default_training_teaches_the_demo_task(demo_server: RunningServer) -> None:
    cases = held_out()
    base = asyncio.run(exact_match(demo_server.url, "demo", cases))
    status, elapsed = train_with_defaults(demo_server.url, "train.jsonl", "models/lora/meow")
    served = status["result"]["served_as"]
    tuned = asyncio.run(exact_match(demo_server.url, served, cases))
    # Reported, never asserted: timings belong to the closing note and the README.
    logger.warning(
        "demo task: job %.0fs (train_runtime %.0fs), exact match %.1f -> %.1f on %d held-out rows",
        elapsed,
        status["result"]["train_runtime"],
        base,
        tuned,
        len(cases),
    )
    assert tuned - base >= 50.0, (base, tuned)


@pytest.mark.parametrize("task", ["note", "tag"])
def test_default_training_teaches_a_task_absent_from_pretraining(
    demo_server: RunningServer, task: str
) -> None:
    base = evaluate_exact_match(demo_server.url, "demo", f"{task}_test.jsonl")
    status, elapsed = train_with_defaults(
        demo_server.url, f"{task}_train.jsonl", f"models/lora/{task}"
    )
    served = status["result"]["served_as"]
    assert served == f"demo:{task}"
    tuned = evaluate_exact_match(demo_server.url, served, f"{task}_test.jsonl")
    logger.warning(
        "%s task: job %.0fs (train_runtime %.0fs), exact match %.1f -> %.1f",
        task,
        elapsed,
        status["result"]["train_runtime"],
        base,
        tuned,
    )
    assert tuned - base >= 50.0, (base, tuned)
