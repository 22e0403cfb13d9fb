"""Test cases of an evaluation: inline ``test_data`` or a dataset file -> ``Sample``s.

Files are read with the training loader (``training.datasets``), so every format a model can
be fine-tuned on can also be evaluated: input/expected, alpaca instruction/input/output,
prompt/completion and chat ``messages`` rows, in json, jsonl or csv.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpt_service.engine.chat import render_chat
from gpt_service.errors import InvalidRequest
from gpt_service.evaluation.spec import EvalRequest
from gpt_service.paths import find_file
from gpt_service.training.datasets import Example, InvalidDataset, load_examples, row_to_example
from gpt_service.training.validation import DatasetNotFound


@dataclass(frozen=True)
class Sample:
    """One test case: the conversation to answer and the reference answer."""

    messages: list[dict[str, str]]
    expected: str

    @property
    def input(self) -> str:
        """What a reader of the results wants to see: the last user turn."""
        return self.messages[-1]["content"]

    @property
    def raw_prompt(self) -> str:
        """The prompt without a chat template: the turns' texts, one per paragraph."""
        return "\n\n".join(m["content"] for m in self.messages if m["content"].strip())

    def prompt_text(self, tokenizer: Any, use_chat_template: bool) -> str:
        """The exact prompt text the model sees (perplexity conditions on the same text)."""
        return render_chat(tokenizer, self.messages) if use_chat_template else self.raw_prompt


def _from_example(example: Example) -> Sample:
    return Sample(messages=list(example.messages), expected=example.response)


def resolve_dataset(path: str, data_dir: Path, roots: Sequence[Path]) -> Path:
    """A dataset file inside one of ``roots``; relative paths are tried against each root."""
    try:
        return find_file(path, data_dir, roots, DatasetNotFound)
    except (OSError, ValueError) as exc:
        if isinstance(exc, InvalidRequest):
            raise
        # A NUL byte or an over-long name is the request's fault, not the server's.
        raise InvalidDataset(f"dataset_path is not a usable path: {exc}") from None


def load_samples(request: EvalRequest, data_dir: Path, roots: Iterable[Path]) -> list[Sample]:
    """Every sample of the request (first ``max_samples`` only); blocking file I/O."""
    if request.test_data is not None:
        rows = [{"input": s.input, "expected": s.expected} for s in request.test_data]
        examples = [row_to_example(row, number) for number, row in enumerate(rows, start=1)]
    else:
        if request.dataset_path is None:
            raise InvalidDataset("give test_data or dataset_path")
        path = resolve_dataset(request.dataset_path, data_dir, list(roots))
        examples = load_examples(path, request.dataset_format)
    if request.max_samples is not None:
        examples = examples[: request.max_samples]
    if not examples:
        raise InvalidDataset("the evaluation has no samples")
    return [_from_example(example) for example in examples]
