"""Scores of one evaluation: text metrics from predictions, perplexity from the model.

Perplexity runs the model itself, so it runs on the model's engine thread (between two
batching steps, ``Engine.run_between_steps``) in chunks: the engine thread is the only one
that may touch the model, and chunking lets interactive requests interleave.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from gpt_service.evaluation.metrics import compute_metrics
from gpt_service.evaluation.perplexity import PerplexityResult, perplexity
from gpt_service.evaluation.samples import Sample
from gpt_service.remote.perplexity import PerplexityUnavailable, remote_nll, sample_perplexity

PERPLEXITY_CHUNK = 32  # pairs per engine-thread call: short enough not to stall serving


@dataclass
class Scores:
    """Corpus scores, their details (signatures, sub-scores) and per-sample values."""

    aggregate: dict[str, float | None] = field(default_factory=dict)
    details: dict[str, dict[str, Any]] = field(default_factory=dict)
    per_sample: dict[str, list[float | None]] = field(default_factory=dict)


def finite(value: float | None) -> float | None:
    """JSON has no NaN/Infinity: a sample without a defined score gets ``null``."""
    return value if value is not None and math.isfinite(value) else None


def text_scores(
    names: Sequence[str],
    predictions: Sequence[str],
    references: Sequence[str],
    options: dict[str, dict[str, Any]],
) -> Scores:
    """exact_match / bleu / rouge / chrf via ``compute_metrics`` (the reference libraries)."""
    scores = Scores()
    if not names:
        return scores
    for name, result in compute_metrics(names, predictions, references, options).items():
        details = dict(result.details)
        if name == "rouge":
            # ROUGE-1/2/L per sample go to the rows; the corpus means stay in the details.
            for kind in ("rouge1", "rouge2", "rougeL"):
                scores.per_sample[kind] = [finite(v) for v in details.pop(f"per_sample_{kind}")]
        else:
            scores.per_sample[name] = [finite(v) for v in result.per_sample]
        scores.aggregate[name] = finite(result.score)
        scores.details[name] = details
    return scores


@contextmanager
def adapter_selected(model: Any, adapter: str | None) -> Iterator[None]:
    """Run ``model`` as the engine serves ``adapter`` (``None``: the base weights).

    The engine passes ``adapter_names`` per row, so PEFT's active adapter is otherwise
    irrelevant to serving; it is switched here for the plain forward of ``perplexity`` and
    restored after. Engine thread only.
    """
    if not hasattr(model, "peft_config"):
        if adapter is not None:
            raise ValueError(f"the model has no LoRA adapter '{adapter}'")
        yield
        return
    if adapter is None:
        with model.disable_adapter():
            yield
        return
    previous = model.active_adapter
    model.set_adapter(adapter, inference_mode=True)
    try:
        yield
    finally:
        model.set_adapter(previous, inference_mode=True)


@dataclass
class PerplexityTotals:
    total_nll: float = 0.0
    num_tokens: int = 0
    per_sample: list[float | None] = field(default_factory=list)

    @property
    def perplexity(self) -> float | None:
        return finite(math.exp(self.total_nll / self.num_tokens)) if self.num_tokens else None


def _chunk_perplexity(
    loaded: Any, adapter: str | None, samples: Sequence[Sample], use_chat_template: bool
) -> PerplexityResult:
    # Prompts are rendered here, off the event loop, exactly as generation renders them.
    pairs = [(s.prompt_text(loaded.tokenizer, use_chat_template), s.expected) for s in samples]
    # ``loaded.model`` is read here, on the engine thread: adding an adapter replaces it.
    with adapter_selected(loaded.model, adapter):
        return perplexity(loaded.model, loaded.tokenizer, pairs)


async def remote_perplexity(
    loaded: Any, adapter: str | None, samples: Sequence[Sample], use_chat_template: bool
) -> PerplexityTotals:
    """From the remote engine's prompt logprobs; raises ``PerplexityUnavailable`` with the
    reason when it gives none (or the prompt needs a chat template only the upstream has)."""
    if use_chat_template:
        raise PerplexityUnavailable(
            "the remote engine applies its own chat template, which this server cannot render "
            "to score the expected text; use use_chat_template: false"
        )
    results = await remote_nll(loaded, adapter, [(s.raw_prompt, s.expected) for s in samples])
    totals = PerplexityTotals()
    for result in results:
        totals.total_nll += result.nll
        totals.num_tokens += result.num_tokens
        totals.per_sample.append(finite(sample_perplexity(result)))
    return totals


async def model_perplexity(
    loaded: Any,
    adapter: str | None,
    samples: Sequence[Sample],
    use_chat_template: bool,
    on_chunk: Callable[[int], None] | None = None,
) -> PerplexityTotals:
    """Corpus perplexity = exp(sum of target NLL / number of target tokens) over all chunks.

    Each sample's target is its ``expected`` text given the prompt the model is asked with.
    """
    if getattr(loaded, "is_remote", False):
        return await remote_perplexity(loaded, adapter, samples, use_chat_template)
    totals = PerplexityTotals()
    for start in range(0, len(samples), PERPLEXITY_CHUNK):
        chunk = samples[start : start + PERPLEXITY_CHUNK]
        result = await loaded.engine.run_between_steps(
            lambda chunk=chunk: _chunk_perplexity(loaded, adapter, chunk, use_chat_template)
        )
        totals.total_nll += result.mean_nll * result.num_tokens
        totals.num_tokens += result.num_tokens
        totals.per_sample += [finite(value) for value in result.per_sample]
        if on_chunk is not None:
            on_chunk(start + len(chunk))
    return totals


def add_unavailable(scores: Scores, reason: str, num_samples: int) -> None:
    scores.aggregate["perplexity"] = None
    scores.per_sample["perplexity"] = [None] * num_samples
    scores.details["perplexity"] = {"unavailable": reason}


def add_perplexity(scores: Scores, totals: PerplexityTotals, prompt_format: str) -> None:
    scores.aggregate["perplexity"] = totals.perplexity
    scores.per_sample["perplexity"] = totals.per_sample
    mean_nll = totals.total_nll / totals.num_tokens if totals.num_tokens else None
    scores.details["perplexity"] = {
        "mean_nll": finite(mean_nll),
        "num_tokens": totals.num_tokens,
        "prompt_format": prompt_format,
    }
