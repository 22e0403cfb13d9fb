"""Evaluation API in-process: the demo model and a random Llama with a random LoRA adapter.

Scores are checked against the reference libraries and against a direct perplexity
computation on a freshly loaded copy of the same weights.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import sacrebleu

from gpt_service.config import DEMO_MODEL_DIR
from gpt_service.engine.chat import render_chat
from gpt_service.evaluation.perplexity import perplexity
from tests.conftest import app_client, make_settings

QUESTIONS = ["你好，请介绍一下人工智能。", "什么是机器学习？", "Tell me about Python"]


@pytest.fixture
async def evals(tiny_dir: Path, tmp_path: Path):
    """The app with the demo model, and the tiny models' directory as a read-only root."""
    settings = make_settings(tmp_path / "data", model_dirs=[tiny_dir])
    async with app_client(settings, timeout=300) as c:
        yield c


async def evaluate(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    """POST /evaluate and poll the results until the evaluation has finished."""
    response = await client.post("/evaluate", json=body)
    assert response.status_code == 200, response.text
    eval_id = response.json()["eval_id"]
    for _ in range(600):
        results = (await client.get(f"/evaluate/results/{eval_id}")).json()
        if results["status"] not in ("queued", "running"):
            return results
        await asyncio.sleep(0.1)
    raise AssertionError(f"evaluation {eval_id} did not finish: {results}")


def direct_perplexity(model_dir: Path, pairs: list[tuple[str, str]], adapter: Path | None = None):
    """The same metric computed outside the service, on a fresh copy of the weights."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).eval()
    return perplexity(model, tokenizer, pairs), tokenizer


async def test_identical_prediction_scores_perfectly(evals: httpx.AsyncClient):
    """The reference is the model's own greedy answer: every text metric is at its maximum."""
    prompt = QUESTIONS[0]
    generated = await evals.post(
        "/generate", json={"prompt": prompt, "max_tokens": 24, "temperature": 0}
    )
    answer = generated.json()["text"]
    assert len(answer.strip()) >= 4
    response = await evals.post(
        "/evaluate",
        json={
            "test_data": [{"input": prompt, "expected": answer}],
            "metrics": ["exact_match", "bleu", "rouge", "chrf"],
            "max_tokens": 24,
            "use_chat_template": False,
            "wait": True,
        },
    )
    body = response.json()
    results = body["results"]
    assert response.status_code == 200 and body["status"] == "success"
    assert results["status"] == "completed", results["error"]
    row = results["samples"][0]
    assert row["prediction"] == answer and row["expected"] == answer and row["input"] == prompt
    scores = results["scores"]
    assert list(scores) == ["exact_match", "bleu", "rouge", "chrf"]
    assert scores["exact_match"] == 1.0 and scores["rouge"] == pytest.approx(1.0)
    assert scores["bleu"] == pytest.approx(100.0) and scores["chrf"] == pytest.approx(100.0)
    assert row["scores"]["rouge1"] == pytest.approx(1.0)
    assert results["details"]["bleu"]["tokenizer"] == "zh"
    assert "tok:zh" in results["details"]["bleu"]["signature"]


async def test_bleu_and_chrf_equal_sacrebleu_on_the_predictions(evals: httpx.AsyncClient):
    references = ["人工智能是计算机科学的一个分支。", "机器学习让计算机从数据中学习。", "Python"]
    test_data = [{"input": q, "expected": r} for q, r in zip(QUESTIONS, references, strict=True)]
    results = await evaluate(evals, test_data=test_data, metrics=["bleu", "chrf"], max_tokens=16)
    predictions = [row["prediction"] for row in results["samples"]]
    bleu = sacrebleu.corpus_bleu(predictions, [references], tokenize="zh")
    chrf = sacrebleu.corpus_chrf(predictions, [references])
    assert results["scores"]["bleu"] == pytest.approx(bleu.score)
    assert results["scores"]["chrf"] == pytest.approx(chrf.score)


@pytest.mark.parametrize("use_chat_template", [False, True])
async def test_perplexity_equals_direct_computation_on_demo_model(
    evals: httpx.AsyncClient, use_chat_template: bool
):
    expected = [
        "人工智能是让机器像人一样思考的技术。",
        "机器学习是人工智能的一个分支。",
        "Python is a language.",
    ]
    test_data = [{"input": q, "expected": e} for q, e in zip(QUESTIONS, expected, strict=True)]
    results = await evaluate(
        evals,
        model_name="demo",
        test_data=test_data,
        metrics=["perplexity"],
        max_tokens=4,
        use_chat_template=use_chat_template,
    )
    assert results["status"] == "completed", results["error"]
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(DEMO_MODEL_DIR)
    prompts = [
        render_chat(tokenizer, [{"role": "user", "content": q}]) if use_chat_template else q
        for q in QUESTIONS
    ]
    direct, _ = direct_perplexity(DEMO_MODEL_DIR, list(zip(prompts, expected, strict=True)))
    assert results["scores"]["perplexity"] == pytest.approx(direct.perplexity, rel=1e-4)
    per_sample = [row["scores"]["perplexity"] for row in results["samples"]]
    assert per_sample == pytest.approx(direct.per_sample, rel=1e-4)
    details = results["details"]["perplexity"]
    assert details["num_tokens"] == direct.num_tokens
    assert details["prompt_format"] == ("chat_template" if use_chat_template else "raw")


def save_random_adapter(base_dir: Path, out_dir: Path) -> Path:
    """A LoRA adapter with random (non-zero) weights, so it changes the model's outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    config = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"])
    config.init_lora_weights = False
    get_peft_model(model, config).save_pretrained(out_dir)
    return out_dir


async def test_adapter_and_base_are_each_evaluated_with_their_own_weights(
    evals: httpx.AsyncClient, tiny_dir: Path
):
    tiny = tiny_dir / "models" / "tiny-llama"
    settings = evals.app.state.settings  # type: ignore[attr-defined]
    adapter_dir = save_random_adapter(tiny, settings.data_dir / "models" / "lora" / "rand")
    loaded = await evals.post("/models/load", json={"model_name": "tiny", "model_path": str(tiny)})
    assert loaded.status_code == 200, loaded.text
    added = await evals.post(
        "/models/tiny/adapters", json={"adapter_path": str(adapter_dir), "adapter_name": "rand"}
    )
    assert added.status_code == 200, added.text
    test_data = [{"input": "hello world", "expected": "this is a tiny test"}]
    pairs = [("hello world", "this is a tiny test")]
    scores = {}
    for name in ("tiny", "tiny:rand"):
        results = await evaluate(
            evals, model_name=name, test_data=test_data, metrics=["perplexity"],
            max_tokens=2, use_chat_template=False,
        )  # fmt: skip
        assert results["model_name"] == name and results["status"] == "completed"
        scores[name] = results["scores"]["perplexity"]
    base, _ = direct_perplexity(tiny, pairs)
    with_adapter, _ = direct_perplexity(tiny, pairs, adapter=adapter_dir)
    assert scores["tiny"] == pytest.approx(base.perplexity, rel=1e-4)
    assert scores["tiny:rand"] == pytest.approx(with_adapter.perplexity, rel=1e-4)
    assert abs(base.perplexity - with_adapter.perplexity) > 1e-3 * base.perplexity
    # Serving still routes per request after the evaluation switched adapters.
    r = await evals.post("/generate", json={"prompt": "hello", "model_name": "tiny:rand"})
    assert r.status_code == 200


def write_dataset(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")


async def test_dataset_file_runs_batched_with_rows_progress_and_history(
    evals: httpx.AsyncClient,
):
    settings = evals.app.state.settings  # type: ignore[attr-defined]
    rows = [
        {"input": "你好", "expected": "你好！"},
        {"instruction": "什么是机器学习？", "output": "机器学习让计算机从数据中学习。"},
        {"prompt": "Tell me about Python", "completion": "Python is a language."},
        {"messages": [
            {"role": "system", "content": "你是助手。"},
            {"role": "user", "content": "介绍一下Python"},
            {"role": "assistant", "content": "Python是一种编程语言。"},
        ]},
    ] * 3  # fmt: skip
    write_dataset(settings.data_dir / "datasets" / "mixed.jsonl", rows)
    engine = evals.app.state.services.registry.get("demo").engine  # type: ignore[attr-defined]
    steps_before = len(engine.stats.step_batch_sizes)
    results = await evaluate(
        evals, dataset_path="datasets/mixed.jsonl", max_samples=10, max_tokens=8
    )
    assert results["status"] == "completed", results["error"]
    assert results["num_samples"] == 10 and len(results["samples"]) == 10
    assert results["progress"] == 100.0 and results["progress_detail"]["samples_done"] == 10
    assert list(results["scores"]) == ["perplexity", "exact_match", "bleu", "rouge", "chrf"]
    assert set(results["details"]["rouge"]) >= {"rouge1", "rouge2", "rougeL"}
    row = results["samples"][3]
    assert row["input"] == "介绍一下Python" and row["expected"] == "Python是一种编程语言。"
    assert row["messages"][0] == {"role": "system", "content": "你是助手。"}
    assert set(row["scores"]) == {
        "perplexity", "exact_match", "bleu", "rouge1", "rouge2", "rougeL", "chrf"
    }  # fmt: skip
    generation = results["generation"]
    assert generation["num_completion_tokens"] > 0 and generation["tokens_per_second"] > 0
    # Generation went through the continuous-batching engine: steps decoded several samples.
    assert max(list(engine.stats.step_batch_sizes)[steps_before:]) > 1
    page = (await evals.get(f"/evaluate/results/{results['eval_id']}?sample_offset=8")).json()
    assert [r["index"] for r in page["samples"]] == [8, 9] and page["samples_offset"] == 8
    history = (await evals.get("/evaluate/history?status=completed")).json()
    assert history["total"] == 1 and history["evaluations"][0]["eval_id"] == results["eval_id"]
    assert history["evaluations"][0]["scores"] == results["scores"]
    assert (await evals.get("/evaluate/history?status=failed")).json()["total"] == 0


BAD_REQUESTS = [
    ({"test_data": [{"input": "a", "expected": "b"}], "metrics": ["accuracy"]}, 400, "accuracy"),
    ({"test_data": [{"input": "a", "expected": "b"}], "metrics": []}, 400, "metrics"),
    ({"test_data": []}, 400, "empty"),
    ({"metrics": ["bleu"]}, 400, "either"),
    ({"test_data": [{"input": "a", "expected": "b"}], "dataset_path": "x.jsonl"}, 400, "either"),
    ({"test_data": [{"input": "", "expected": "b"}]}, 400, "input"),
    ({"dataset_path": "missing.jsonl"}, 404, "missing.jsonl"),
    ({"dataset_path": "../../etc/passwd"}, 400, "outside"),
    ({"model_name": "nope", "test_data": [{"input": "a", "expected": "b"}]}, 404, "nope"),
    ({"model_name": "demo:nope", "test_data": [{"input": "a", "expected": "b"}]}, 404, "nope"),
    ({"test_data": [{"input": "a", "expected": "b"}], "max_tokens": 10**6}, 400, "max_tokens"),
    ({"test_data": [{"input": "a", "expected": "b"}] * 17, "wait": True}, 400, "wait"),
    ({"test_data": [{"input": "a", "expected": "b"}], "bleu_tokenize": "spm"}, 400, "bleu"),
]


async def test_bad_requests_are_refused_and_nothing_is_stored(evals: httpx.AsyncClient):
    settings = evals.app.state.settings  # type: ignore[attr-defined]
    (settings.data_dir / "broken.jsonl").write_text('{"input": "a"}\n{oops\n', encoding="utf-8")
    cases = [*BAD_REQUESTS, ({"dataset_path": "broken.jsonl"}, 400, "row 2")]
    for body, status, fragment in cases:
        response = await evals.post("/evaluate", json=body)
        assert response.status_code == status, (body, response.text)
        assert fragment in response.json()["detail"], (body, response.json())
    assert (await evals.get("/evaluate/history")).json()["total"] == 0
    missing = await evals.get("/evaluate/results/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and "no evaluation" in missing.json()["detail"]
    bad_filter = await evals.get("/evaluate/history?status=exploded")
    assert bad_filter.status_code == 400
