"""Dataset formats, first-bad-row reporting and response-only label masking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpt_service.training.config import TrainJobSpec
from gpt_service.training.datasets import (
    IGNORE_INDEX,
    Example,
    InvalidDataset,
    load_examples,
    tokenize_example,
)
from gpt_service.training.progress import thin
from tests.tiny_models import build_tokenizer


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    return path


def test_every_row_shape_becomes_a_user_turn_and_a_response(tmp_path: Path) -> None:
    rows = [
        {"instruction": "Translate", "input": "cat", "output": "猫"},
        {"instruction": "Say hi", "output": "hi", "system": "be brief"},
        {"prompt": "2+2=", "completion": "4"},
        {"input": "什么是AI？", "expected": "AI是人工智能的缩写"},
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
    ]
    examples = load_examples(write_jsonl(tmp_path / "d.jsonl", rows))
    assert examples[0] == Example([{"role": "user", "content": "Translate\ncat"}], "猫")
    assert examples[1].messages[0] == {"role": "system", "content": "be brief"}
    assert examples[2] == Example([{"role": "user", "content": "2+2="}], "4")
    assert examples[3].response == "AI是人工智能的缩写"
    assert examples[4] == Example([{"role": "user", "content": "a"}], "b")


def test_json_array_and_csv_keep_numeric_answers_as_text(tmp_path: Path) -> None:
    (tmp_path / "d.json").write_text(json.dumps([{"input": "6*7", "expected": 42}]))
    assert load_examples(tmp_path / "d.json", "json")[0].response == "42"
    (tmp_path / "d.csv").write_text("instruction,input,output\nadd,1 2,03\nsay hi,,hello\n")
    examples = load_examples(tmp_path / "d.csv")
    assert [e.response for e in examples] == ["03", "hello"]  # not the integer 3
    assert examples[1].messages[-1]["content"] == "say hi"


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"prompt": "a", "completion": "b"}', "{not json", '{"prompt": "c"}'], "row 2"),
        (['{"prompt": "a", "completion": "b"}', '{"question": "a", "answer": "b"}'], "row 2"),
        (['{"prompt": "a", "completion": ""}'], "row 1: the response is empty"),
        (['{"prompt": "a", "completion": "b"}', "[1, 2]"], "row 2: expected a JSON object"),
        (
            [
                '{"messages": [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]}'
            ],
            "row 1: the last message must be the assistant's",
        ),
    ],
)
def test_the_first_bad_row_is_named(tmp_path: Path, lines: list[str], message: str) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines))
    with pytest.raises(InvalidDataset, match=message):
        load_examples(path)


def test_unreadable_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidDataset, match="does not exist"):
        load_examples(tmp_path / "missing.jsonl")
    (tmp_path / "d.txt").write_text("hello")
    with pytest.raises(InvalidDataset, match="cannot tell the format"):
        load_examples(tmp_path / "d.txt")
    (tmp_path / "e.jsonl").write_text("\n\n")
    with pytest.raises(InvalidDataset, match="no rows"):
        load_examples(tmp_path / "e.jsonl")
    (tmp_path / "bad.json").write_text('[{"prompt": "a",]')
    with pytest.raises(InvalidDataset, match="not valid JSON"):
        load_examples(tmp_path / "bad.json")


def test_labels_cover_only_the_response_and_its_end_of_turn() -> None:
    tokenizer = build_tokenizer()
    example = Example([{"role": "user", "content": "hello world"}], "你好，世界")
    features = tokenize_example(tokenizer, example, max_length=256)
    ids, labels = features["input_ids"], features["labels"]
    assert len(ids) == len(labels) == len(features["attention_mask"])
    num_prompt = labels.index(next(label for label in labels if label != IGNORE_INDEX))
    assert num_prompt > 0 and all(label == IGNORE_INDEX for label in labels[:num_prompt])
    assert labels[num_prompt:] == ids[num_prompt:]
    # The prompt is exactly what the engine feeds at serving time (generation prompt included).
    prompt = tokenizer.decode(ids[:num_prompt])
    assert prompt.endswith("<|im_start|>assistant\n") and "hello world" in prompt
    assert tokenizer.decode(ids[num_prompt:]).startswith("你好，世界<|im_end|>")
    assert tokenizer.eos_token_id in labels


def test_long_examples_are_cut_from_the_right() -> None:
    tokenizer = build_tokenizer()
    example = Example([{"role": "user", "content": "hi " * 50}], "ok " * 50)
    features = tokenize_example(tokenizer, example, max_length=32)
    assert len(features["input_ids"]) == len(features["labels"]) == 32


def test_thinning_keeps_the_curve_ends_and_a_bounded_size() -> None:
    points = [{"step": i} for i in range(1, 2001)]
    thinned = thin(points, limit=100)
    assert len(thinned) <= 100
    assert thinned[0]["step"] == 1 and thinned[-1]["step"] == 2000
    assert [p["step"] for p in thinned] == sorted(p["step"] for p in thinned)


def test_spec_rejects_inconsistent_options() -> None:
    with pytest.raises(ValueError, match="load_on_completion"):
        TrainJobSpec(base_model="demo", dataset_path="d.jsonl", served_model_name="x")
    with pytest.raises(ValueError):
        TrainJobSpec(base_model="demo", dataset_path="d.jsonl", dataset_format="parquet")
    with pytest.raises(ValueError, match="target_modules"):
        TrainJobSpec(base_model="demo", dataset_path="d.jsonl", target_modules=[])


def test_resume_skips_a_half_written_checkpoint(tmp_path: Path) -> None:
    from gpt_service.training.worker import last_complete_checkpoint

    assert last_complete_checkpoint(tmp_path / "absent") is None
    for step in (5, 10, 15):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-5" / "trainer_state.json").write_text('{"global_step": 5}')
    (tmp_path / "checkpoint-10" / "trainer_state.json").write_text('{"global_step": 10}')
    (tmp_path / "checkpoint-15" / "trainer_state.json").write_text('{"global_st')  # cut short
    assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-10"
