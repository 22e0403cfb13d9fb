"""Text embeddings from a causal LM: last hidden states, mean-pooled over the real tokens.

A causal LM has no trained embedding head, so this is the plain, documented baseline: the
final layer's hidden states averaged over the attention mask (optionally L2-normalised).
The forward passes run on the model's engine thread between two decode steps, so they never
race the batching loop for the model (or its LoRA adapters).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from gpt_service.engine.runner import BASE_ADAPTER
from gpt_service.errors import InvalidRequest

if TYPE_CHECKING:
    from gpt_service.engine.registry import LoadedModel

BATCH_SIZE = 16  # texts per forward pass; the engine decodes between two such passes


@dataclass
class EmbeddingOutput:
    vectors: list[list[float]]
    num_tokens: int


def pad_right(token_lists: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, T)`` ids and mask; right padding keeps the default position ids correct."""
    width = max(len(ids) for ids in token_lists)
    ids = torch.full((len(token_lists), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(token_lists), width), dtype=torch.long)
    for row, tokens in enumerate(token_lists):
        ids[row, : len(tokens)] = torch.tensor(tokens)
        mask[row, : len(tokens)] = 1
    return ids, mask


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``hidden`` ``(B, T, H)``, ``mask`` ``(B, T)`` -> ``(B, H)`` mean over real tokens."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)


def _forward_kwargs(model: Any, batch_size: int, adapter: str | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"output_hidden_states": True, "use_cache": False}
    is_peft = hasattr(model, "peft_config")
    base = model.get_base_model() if is_peft else model
    if "logits_to_keep" in inspect.signature(base.forward).parameters:
        kwargs["logits_to_keep"] = 1  # the hidden states are what we need, not (B, T, V) logits
    if is_peft:
        kwargs["adapter_names"] = [adapter or BASE_ADAPTER] * batch_size
    return kwargs


@torch.inference_mode()
def embed_token_lists(
    model: Any,
    token_lists: list[list[int]],
    pad_id: int,
    adapter: str | None = None,
    normalize: bool = True,
) -> list[list[float]]:
    """One forward pass over ``token_lists``; returns one vector per list."""
    device = next(model.parameters()).device
    ids, mask = pad_right(token_lists, pad_id)
    ids, mask = ids.to(device), mask.to(device)
    out = model(input_ids=ids, attention_mask=mask, **_forward_kwargs(model, len(ids), adapter))
    if getattr(out, "hidden_states", None) is None:
        raise InvalidRequest("this model does not return hidden states, so it gives no embeddings")
    pooled = mean_pool(out.hidden_states[-1].float(), mask)  # (B, H)
    if normalize:
        pooled = F.normalize(pooled, dim=-1)
    return pooled.tolist()


def _tokenize(loaded: LoadedModel, texts: list[str]) -> list[list[int]]:
    token_lists = [loaded.encode(text) for text in texts]
    limit = loaded.engine.max_context
    for i, ids in enumerate(token_lists):
        if not ids:
            raise InvalidRequest(f"input[{i}] is empty after tokenization")
        if len(ids) > limit:
            raise InvalidRequest(
                f"input[{i}] has {len(ids)} tokens; model '{loaded.name}' accepts at most {limit}"
            )
    return token_lists


async def embed(
    loaded: LoadedModel, texts: list[str], adapter: str | None, normalize: bool = True
) -> EmbeddingOutput:
    """Embed ``texts`` with ``loaded`` (and its LoRA ``adapter``) on its engine thread."""
    engine = loaded.engine
    token_lists = await engine.run_between_steps(lambda: _tokenize(loaded, texts))
    vectors: list[list[float]] = []
    for start in range(0, len(token_lists), BATCH_SIZE):
        chunk = token_lists[start : start + BATCH_SIZE]
        # Read the model on the engine thread: adding an adapter swaps it there.
        vectors += await engine.run_between_steps(
            lambda chunk=chunk: embed_token_lists(
                engine.runner.model, chunk, engine.runner.pad_id, adapter, normalize
            )
        )
    return EmbeddingOutput(vectors, sum(len(ids) for ids in token_lists))
