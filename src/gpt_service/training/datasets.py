"""Fine-tuning datasets: file formats -> (conversation, response) examples -> masked tokens.

Row shapes (detected per row, so one file may mix them):
  chat      {"messages": [{"role": ..., "content": ...}, ..., {"role": "assistant", ...}]}
  alpaca    {"instruction": ..., "input": optional, "output": ...}
  prompt    {"prompt": ..., "completion": ...}
  eval      {"input": ..., "expected": ...}   (API.md's /evaluate rows; also input/output)
Any shape may carry a ``system`` field. Files are json (a list of rows), jsonl or csv, read
with the ``datasets`` library; a broken file is reported with its first bad row.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpt_service.engine.chat import DEFAULT_CHAT_TEMPLATE, ROLES, render_chat
from gpt_service.errors import InvalidRequest

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label value the loss skips (PyTorch cross-entropy's ignore_index)
MAX_ROWS = 1_000_000


class InvalidDataset(InvalidRequest):
    pass


@dataclass(frozen=True)
class Example:
    messages: list[dict[str, str]]  # the conversation up to the response
    response: str


def resolve_format(path: Path, dataset_format: str) -> str:
    if dataset_format != "auto":
        return dataset_format
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("json", "jsonl", "csv"):
        return suffix
    raise InvalidDataset(
        f"cannot tell the format of '{path.name}' from its extension; "
        "set dataset_format to json, jsonl or csv"
    )


def load_examples(path: Path, dataset_format: str = "auto") -> list[Example]:
    """Read and check every row; raise ``InvalidDataset`` naming the first bad one."""
    if not path.is_file():
        raise InvalidDataset(f"dataset file '{path.name}' does not exist")
    fmt = resolve_format(path, dataset_format)
    rows = _load_rows(path, fmt)
    if not rows:
        raise InvalidDataset(f"dataset '{path.name}' has no rows")
    if len(rows) > MAX_ROWS:
        raise InvalidDataset(f"dataset '{path.name}' has more than {MAX_ROWS} rows")
    return [row_to_example(row, number) for number, row in enumerate(rows, start=1)]


def _load_rows(path: Path, fmt: str) -> list[dict[str, Any]]:
    import datasets

    datasets.disable_progress_bars()
    if fmt in ("json", "jsonl"):
        _check_json_syntax(path, fmt)
        kwargs: dict[str, Any] = {}
    else:
        kwargs = {"features": _csv_string_features(path), "keep_default_na": False}
    try:
        data = datasets.load_dataset(
            "json" if fmt == "jsonl" else fmt, data_files=str(path), split="train", **kwargs
        )
    except Exception as exc:  # pyarrow/pandas raise many types for malformed files
        raise InvalidDataset(f"cannot read '{path.name}' as {fmt}: {_first_line(exc)}") from exc
    return data.to_list()


def _check_json_syntax(path: Path, fmt: str) -> None:
    """The ``datasets`` json reader does not say where a file breaks; the stdlib does."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if fmt == "json" and text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidDataset(f"'{path.name}' is not valid JSON: {exc}") from exc
        bad = next((i for i, r in enumerate(rows, 1) if not isinstance(r, dict)), None)
        if bad is not None:
            raise InvalidDataset(f"row {bad}: expected a JSON object")
        if not rows:
            raise InvalidDataset(f"dataset '{path.name}' has no rows")
        return
    number = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        number += 1
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidDataset(f"row {number}: not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise InvalidDataset(f"row {number}: expected a JSON object")
    if number == 0:
        raise InvalidDataset(f"dataset '{path.name}' has no rows")


def _csv_string_features(path: Path) -> Any:
    """Every CSV column as text, so an answer like ``42`` stays the string ``"42"``."""
    from datasets import Features, Value

    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        header = next(csv.reader(handle), None)
    if not header:
        raise InvalidDataset(f"'{path.name}' has no CSV header row")
    return Features({name: Value("string") for name in header})


def _text(row: dict[str, Any], key: str) -> str | None:
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, bool | int | float):
        return str(value)
    if not isinstance(value, str):
        raise ValueError(f"'{key}' must be text, got {type(value).__name__}")
    return value


def row_to_example(row: dict[str, Any], number: int) -> Example:
    try:
        example = _convert(row)
    except ValueError as exc:
        raise InvalidDataset(f"row {number}: {exc}") from None
    if not example.response.strip():
        raise InvalidDataset(f"row {number}: the response is empty")
    return example


def _convert(row: dict[str, Any]) -> Example:
    if row.get("messages") is not None:
        return _chat_example(row["messages"])
    system = _text(row, "system")
    prefix = [{"role": "system", "content": system}] if system else []
    if _text(row, "instruction") is not None and _text(row, "output") is not None:
        instruction, extra = _text(row, "instruction") or "", _text(row, "input") or ""
        # instruction + "\n" + input: the prompt format the bundled demo data documents
        prompt = f"{instruction}\n{extra}" if extra.strip() else instruction
        response = _text(row, "output") or ""
    else:
        pair = next(
            ((p, r) for p, r in _PAIRS if _text(row, p) is not None and _text(row, r) is not None),
            None,
        )
        if pair is None:
            raise ValueError(
                f"no known fields (has {sorted(k for k, v in row.items() if v is not None)}); "
                "expected messages, instruction/output, prompt/completion or input/expected"
            )
        prompt, response = _text(row, pair[0]) or "", _text(row, pair[1]) or ""
    if not prompt.strip():
        raise ValueError("the prompt is empty")
    return Example([*prefix, {"role": "user", "content": prompt}], response)


_PAIRS = (("prompt", "completion"), ("input", "expected"), ("input", "output"))


def _chat_example(messages: Any) -> Example:
    if not isinstance(messages, list) or len(messages) < 2:
        raise ValueError("'messages' must list at least a user and an assistant message")
    turns = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise ValueError(f"message {i}: needs a role among {ROLES}")
        if not isinstance(message.get("content"), str):
            raise ValueError(f"message {i}: 'content' must be text")
        turns.append({"role": message["role"], "content": message["content"]})
    if turns[-1]["role"] != "assistant":
        raise ValueError("the last message must be the assistant's (the response to learn)")
    return Example(turns[:-1], turns[-1]["content"])


# ---- tokenization (worker side: needs the base model's tokenizer) ------------------------
def tokenize_example(tokenizer: Any, example: Example, max_length: int) -> dict[str, list[int]]:
    """Prompt rendered with the chat template; labels only on the response tokens.

    The response text is what the template adds after the generation prompt (so the model
    also learns the end-of-turn marker that stops generation), plus EOS if that marker is not
    the tokenizer's EOS. Over-long examples are cut at ``max_length`` from the right.
    """
    prompt_text = render_chat(tokenizer, example.messages)
    response_text = _response_text(tokenizer, example, prompt_text)
    # (T_prompt,) and (T_response,): templated text carries its own special tokens
    prompt_ids = tokenizer.encode(prompt_text, add_special_tokens=False)
    response_ids = tokenizer.encode(response_text, add_special_tokens=False)
    eos = tokenizer.eos_token_id
    if eos is not None and eos not in response_ids:
        response_ids.append(eos)
    input_ids = (prompt_ids + response_ids)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + response_ids)[:max_length]
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}


def _response_text(tokenizer: Any, example: Example, prompt_text: str) -> str:
    # The same template the engine serves with (engine.chat.render_chat), closed turn.
    full = tokenizer.apply_chat_template(
        [*example.messages, {"role": "assistant", "content": example.response}],
        chat_template=getattr(tokenizer, "chat_template", None) or DEFAULT_CHAT_TEMPLATE,
        add_generation_prompt=False,
        tokenize=False,
    )
    if full.startswith(prompt_text) and example.response in full[len(prompt_text) :]:
        return full[len(prompt_text) :]
    # Templates that re-render earlier turns differently (e.g. strip reasoning) do not
    # extend the prompt text; the bare response is then the best we can train on.
    return example.response


def count_trainable(features: list[dict[str, list[int]]]) -> int:
    return sum(any(label != IGNORE_INDEX for label in f["labels"]) for f in features)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
