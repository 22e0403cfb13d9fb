"""Evaluation requests and samples: validation, dataset resolution, prompt text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from gpt_service.errors import InvalidRequest, NotFound, PathNotAllowed
from gpt_service.evaluation.samples import load_samples, resolve_dataset
from gpt_service.evaluation.spec import EvalRequest
from gpt_service.training.datasets import row_to_example
from tests.tiny_models import build_tokenizer

ROWS = [
    {"input": "第一题", "expected": "答案一"},
    {"instruction": "翻译", "input": "cat", "output": "猫"},
    {"messages": [
        {"role": "system", "content": "简短回答。"},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
    ]},
]  # fmt: skip


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    data_dir, demo_dir = tmp_path / "data", tmp_path / "demo"
    for directory in (data_dir, demo_dir):
        directory.mkdir()
    lines = "\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS)
    (demo_dir / "test.jsonl").write_text(lines, encoding="utf-8")
    return data_dir, demo_dir


def test_dataset_rows_of_every_training_format_become_samples(roots: tuple[Path, Path]):
    data_dir, demo_dir = roots
    request = EvalRequest(dataset_path="test.jsonl")  # found in the second root
    samples = load_samples(request, data_dir, [demo_dir])
    # The alpaca prompt is built exactly as training builds it.
    alpaca_prompt = row_to_example(ROWS[1], 2).messages[-1]["content"]
    assert alpaca_prompt.startswith("翻译") and alpaca_prompt.endswith("cat")
    assert [(s.input, s.expected) for s in samples] == [
        ("第一题", "答案一"),
        (alpaca_prompt, "猫"),
        ("Hi", "Hello"),
    ]
    assert samples[2].raw_prompt == "简短回答。\n\nHi"
    tokenizer = build_tokenizer()
    templated = samples[2].prompt_text(tokenizer, use_chat_template=True)
    assert templated.startswith("<|im_start|>system\n简短回答。")
    assert templated.endswith("<|im_start|>assistant\n")
    limited = EvalRequest(dataset_path="test.jsonl", max_samples=2)
    assert len(load_samples(limited, data_dir, [demo_dir])) == 2


def test_dataset_paths_stay_inside_the_roots(roots: tuple[Path, Path], tmp_path: Path):
    data_dir, demo_dir = roots
    (tmp_path / "secret.jsonl").write_text('{"input": "a", "expected": "b"}', encoding="utf-8")
    with pytest.raises(PathNotAllowed):
        resolve_dataset("../secret.jsonl", data_dir, [demo_dir])
    with pytest.raises(PathNotAllowed):
        resolve_dataset(str(tmp_path / "secret.jsonl"), data_dir, [demo_dir])
    with pytest.raises(NotFound):
        resolve_dataset("absent.jsonl", data_dir, [demo_dir])
    for unusable in ("a\x00b.jsonl", "x" * 5000):
        with pytest.raises(InvalidRequest):
            resolve_dataset(unusable, data_dir, [demo_dir])


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"test_data": [{"input": "a", "expected": "b"}], "metrics": ["acc"]}, "unknown metric"),
        ({"test_data": []}, "must not be empty"),
        ({}, "either"),
        ({"test_data": [{"input": "a", "expected": "\ud800"}]}, "unicode"),
        ({"dataset_path": "d.jsonl", "wait": True}, "wait is only"),
    ],
)
def test_invalid_requests(body: dict, fragment: str):
    with pytest.raises(ValidationError, match=fragment):
        EvalRequest(**body)


def test_defaults_are_greedy_with_every_metric():
    request = EvalRequest(test_data=[{"input": "a", "expected": "b"}], metrics=["bleu", "bleu"])
    assert request.metrics == ["bleu"]
    assert request.sampling().is_greedy
    default = EvalRequest(test_data=[{"input": "a", "expected": "b"}])
    assert default.metrics == ["perplexity", "exact_match", "bleu", "rouge", "chrf"]
    assert default.text_metrics == ["exact_match", "bleu", "rouge", "chrf"]
    assert "test_data" not in default.stored_params("demo", 1).model_dump()
