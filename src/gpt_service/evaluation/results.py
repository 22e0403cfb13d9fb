"""The stored result of an evaluation: aggregate scores, generation figures, per-sample rows."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gpt_service.evaluation.samples import Sample
from gpt_service.evaluation.scoring import Scores


@dataclass
class SampleOutput:
    """What generation produced for one sample (``error`` set if it could not run)."""

    prediction: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    error: str | None = None


def generation_stats(outputs: Sequence[SampleOutput], seconds: float) -> dict[str, Any]:
    """Throughput of the whole (batched) generation phase: tokens / wall-clock seconds."""
    completion_tokens = sum(o.completion_tokens for o in outputs)
    reasons = Counter(o.finish_reason or "error" for o in outputs)
    return {
        "num_prompt_tokens": sum(o.prompt_tokens for o in outputs),
        "num_completion_tokens": completion_tokens,
        "seconds": round(seconds, 3),
        "tokens_per_second": round(completion_tokens / seconds, 2) if seconds > 0 else None,
        "num_failed": sum(1 for o in outputs if o.error),
        "finish_reasons": dict(reasons),
    }


def sample_rows(
    samples: Sequence[Sample], outputs: Sequence[SampleOutput], scores: Scores
) -> list[dict[str, Any]]:
    rows = []
    for index, (sample, output) in enumerate(zip(samples, outputs, strict=True)):
        row: dict[str, Any] = {
            "index": index,
            "input": sample.input,
            "expected": sample.expected,
            "prediction": output.prediction,
            "scores": {name: values[index] for name, values in scores.per_sample.items()},
            "completion_tokens": output.completion_tokens,
            "finish_reason": output.finish_reason,
        }
        if len(sample.messages) > 1:  # system prompt or earlier turns: keep the context
            row["messages"] = sample.messages
        if output.error:
            row["error"] = output.error
        rows.append(row)
    return rows


def build_result(
    model_name: str,
    samples: Sequence[Sample],
    outputs: Sequence[SampleOutput],
    scores: Scores,
    seconds: float,
) -> dict[str, Any]:
    return {
        "model_name": model_name,
        "num_samples": len(samples),
        "scores": scores.aggregate,
        "details": scores.details,
        "generation": generation_stats(outputs, seconds),
        "samples": sample_rows(samples, outputs, scores),
    }
