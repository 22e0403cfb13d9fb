"""Log-probabilities of sampled tokens (OpenAI ``logprobs`` / ``top_logprobs``)."""

from __future__ import annotations

from typing import Any

import torch

from gpt_service.engine.types import TokenLogprob


def top_logprobs(logits: torch.Tensor, token: int, num_top: int, tokenizer: Any) -> TokenLogprob:
    """``logits`` is one row ``(V,)``; returns the chosen token's logprob and the top-N."""
    logp = logits.log_softmax(dim=-1)
    top = []
    if num_top > 0:
        values, ids = logp.topk(num_top)
        top = [
            (tokenizer.decode([i]), float(v))
            for v, i in zip(values.tolist(), ids.tolist(), strict=True)
        ]
    return TokenLogprob(token=tokenizer.decode([token]), logprob=float(logp[token]), top=top)
