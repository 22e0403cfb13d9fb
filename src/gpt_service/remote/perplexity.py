"""Perplexity of a remote model from the upstream's prompt logprobs.

``/completions`` with ``echo: true`` and ``logprobs`` returns the logprob of every prompt token
on engines that compute prompt logprobs (vLLM, SGLang). Each sample is sent as prompt +
expected text; the tokens that start inside the expected text are scored (the same targets
the local perplexity scores). An engine that does not echo them makes the metric unavailable,
with the reason, rather than wrong.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpt_service.errors import InvalidRequest, NotFound, UpstreamError

if TYPE_CHECKING:
    from gpt_service.remote.model import RemoteModel

MAX_IN_FLIGHT = 8


class PerplexityUnavailable(Exception):
    """The upstream does not give prompt logprobs; ``str(exc)`` says why."""


@dataclass
class SampleNll:
    nll: float
    num_tokens: int


def score_echo(data: Any, prompt: str, text: str) -> SampleNll:
    """Summed NLL of the echoed tokens that start at or after ``len(prompt)`` in ``text``."""
    try:
        choice = data["choices"][0]
        logprobs = choice["logprobs"]
        offsets, values = logprobs["text_offset"], logprobs["token_logprobs"]
    except (KeyError, IndexError, TypeError) as exc:
        raise PerplexityUnavailable(
            "the remote engine returned no prompt logprobs (echo + logprobs)"
        ) from exc
    if not str(choice.get("text") or "").startswith(text) or not offsets:
        raise PerplexityUnavailable("the remote engine does not echo the prompt with logprobs")
    nll, count = 0.0, 0
    for offset, value in zip(offsets, values, strict=False):
        if len(prompt) <= offset < len(text) and value is not None:
            nll -= float(value)
            count += 1
    return SampleNll(nll, count)


async def _one(model: RemoteModel, adapter: str | None, prompt: str, expected: str) -> SampleNll:
    text = prompt + expected
    body = {
        "model": adapter or model.spec.remote_model,
        "prompt": text,
        "max_tokens": 1,
        "temperature": 0,
        "echo": True,
        "logprobs": 0,
    }
    try:
        data = await model.pool.post_json("/completions", body)
    except (InvalidRequest, NotFound, UpstreamError) as exc:
        raise PerplexityUnavailable(
            f"the remote engine refused echo + logprobs: {exc.message}"
        ) from exc
    return score_echo(data, prompt, text)


async def remote_nll(
    model: RemoteModel, adapter: str | None, pairs: Sequence[tuple[str, str]]
) -> list[SampleNll]:
    gate = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def one(prompt: str, expected: str) -> SampleNll:
        async with gate:
            return await _one(model, adapter, prompt, expected)

    return list(await asyncio.gather(*(one(p, e) for p, e in pairs)))


def sample_perplexity(sample: SampleNll) -> float:
    return math.exp(sample.nll / sample.num_tokens) if sample.num_tokens else math.nan
