"""In-process baselines with plain transformers: sequential, static batch, generate_batch."""

from __future__ import annotations

import logging
import time
from typing import Any

import torch

from bench.stats import Result

logger = logging.getLogger(__name__)


def _encode(tokenizer: Any, prompts: list[str]) -> list[list[int]]:
    return [tokenizer.encode(p) for p in prompts]


def _gen_kwargs(tokenizer: Any, new_tokens: int) -> dict[str, Any]:
    return {
        "max_new_tokens": new_tokens,
        "min_new_tokens": new_tokens,
        "do_sample": False,
        "pad_token_id": tokenizer.pad_token_id,
    }


@torch.inference_mode()
def sequential(model: Any, tokenizer: Any, prompts: list[str], new_tokens: int) -> Result:
    """One ``model.generate`` after another; TTFT measured as a 1-token generate."""
    result = Result("1. sequential generate", clients=1)
    start = time.perf_counter()
    for ids in _encode(tokenizer, prompts):
        x = torch.tensor([ids])
        t0 = time.perf_counter()
        model.generate(x, **_gen_kwargs(tokenizer, 1))
        ttft = time.perf_counter() - t0
        t1 = time.perf_counter()
        out = model.generate(x, **_gen_kwargs(tokenizer, new_tokens))
        total = time.perf_counter() - t1
        n = out.shape[1] - x.shape[1]
        result.add_request(n, ttft, [(total - ttft) / max(n - 1, 1)] * (n - 1), total)
    result.wall = time.perf_counter() - start - sum(result.ttfts)  # exclude the TTFT probes
    return result


@torch.inference_mode()
def static_batch(model: Any, tokenizer: Any, prompts: list[str], new_tokens: int) -> Result:
    """All prompts left-padded into one ``generate`` call."""
    result = Result("2. static padded batch", clients=len(prompts))
    tokenizer.padding_side = "left"
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    t0 = time.perf_counter()
    model.generate(**batch, **_gen_kwargs(tokenizer, 1))
    ttft = time.perf_counter() - t0
    t1 = time.perf_counter()
    out = model.generate(**batch, **_gen_kwargs(tokenizer, new_tokens))
    total = time.perf_counter() - t1
    n = out.shape[1] - batch.input_ids.shape[1]
    for _ in prompts:
        result.add_request(n, ttft, [(total - ttft) / max(n - 1, 1)] * (n - 1), total)
    result.wall = total
    return result


@torch.inference_mode()
def hf_continuous(model: Any, tokenizer: Any, prompts: list[str], new_tokens: int) -> Result:
    """transformers' own continuous batching (``generate_batch``), after a warm-up call."""
    from transformers import GenerationConfig

    result = Result("3. transformers generate_batch", clients=len(prompts))
    config = GenerationConfig(
        max_new_tokens=new_tokens,
        do_sample=False,
        eos_token_id=-1,  # never stop early: every request makes new_tokens tokens
        pad_token_id=tokenizer.pad_token_id,
    )
    inputs = _encode(tokenizer, prompts)
    try:
        model.generate_batch(inputs=inputs[:2], generation_config=config)  # warm-up
        t0 = time.perf_counter()
        outputs = model.generate_batch(inputs=inputs, generation_config=config)
        total = time.perf_counter() - t0
    except Exception as exc:  # report, don't abort the whole benchmark
        logger.warning("generate_batch failed: %s", exc)
        result.note = f"failed: {type(exc).__name__}: {str(exc)[:80]}"
        return result
    for out in outputs.values():
        n = len(out.generated_tokens)
        result.add_request(n, float("nan"), [], total)
    result.wall = total
    return result
