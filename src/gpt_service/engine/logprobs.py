"""Log-probabilities of sampled tokens (OpenAI ``logprobs`` / ``top_logprobs``).

The runner returns token ids with their values; the output processor decodes them to text.
"""

from __future__ import annotations

import torch

# The chosen token's logprob and the top-N ``(token id, logprob)``, most likely first.
RawLogprob = tuple[float, list[tuple[int, float]]]


def top_logprobs(logits: torch.Tensor, token: int, num_top: int) -> RawLogprob:
    """``logits`` is one row ``(V,)``; returns the chosen token's logprob and the top-N."""
    logp = logits.log_softmax(dim=-1)
    top: list[tuple[int, float]] = []
    if num_top > 0:
        values, ids = logp.topk(num_top)
        top = list(zip(ids.tolist(), values.tolist(), strict=True))
    return float(logp[token]), top
