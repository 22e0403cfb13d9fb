"""Perplexity of target texts given prompts under a causal language model.

For a pair ``(prompt, target)`` the prompt and the target are tokenized separately (no special
tokens, except a leading BOS when the tokenizer has ``add_bos_token``) and concatenated, so the
prompt tokens are an exact prefix. Prompt positions get label ``-100`` (the standard Hugging Face
masking), so only target tokens are scored. A target token at position 0 (no prompt, no BOS) has
no context and is not scored. Sequences longer than ``max_length`` (default: the model's
``max_position_embeddings``) are truncated from the left, keeping the BOS token if any.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100


@dataclass(frozen=True)
class PerplexityResult:
    """Corpus perplexity plus per-sample values.

    ``perplexity`` = exp(total NLL / total scored target tokens); ``mean_nll`` is that per-token
    NLL (nats); ``per_sample`` is each pair's perplexity (``nan`` if it had no scored token);
    ``num_tokens`` is the total number of scored target tokens.
    """

    perplexity: float
    per_sample: list[float]
    mean_nll: float
    num_tokens: int


@dataclass(frozen=True)
class _Encoded:
    input_ids: list[int]
    labels: list[int]

    @property
    def num_scored(self) -> int:
        """Labels that contribute to the loss (position 0 is never predicted)."""
        return sum(1 for label in self.labels[1:] if label != IGNORE_INDEX)


def _encode_text(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def _bos_prefix(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    bos = getattr(tokenizer, "bos_token_id", None)
    return [bos] if getattr(tokenizer, "add_bos_token", False) and bos is not None else []


def _encode_pair(
    tokenizer: PreTrainedTokenizerBase, prompt: str, target: str, max_length: int | None
) -> _Encoded:
    """Token ids and labels for ``prompt + target``, prompt masked, left-truncated."""
    prefix = _bos_prefix(tokenizer)
    prompt_ids = _encode_text(tokenizer, prompt)
    target_ids = _encode_text(tokenizer, target)
    body_ids = prompt_ids + target_ids
    body_labels = [IGNORE_INDEX] * len(prompt_ids) + target_ids
    if max_length is not None and len(prefix) + len(body_ids) > max_length:
        keep = max_length - len(prefix)
        if len(target_ids) > keep:
            logger.warning("target (%d tokens) truncated to %d tokens", len(target_ids), keep)
        body_ids, body_labels = body_ids[-keep:], body_labels[-keep:]
    return _Encoded(prefix + body_ids, [IGNORE_INDEX] * len(prefix) + body_labels)


def _resolve_max_length(model: PreTrainedModel, max_length: int | None) -> int | None:
    if max_length is None:
        max_length = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if max_length is not None and max_length < 2:
        raise ValueError(f"max_length must be >= 2, got {max_length}")
    return max_length


def _model_device(model: PreTrainedModel) -> torch.device:
    device = getattr(model, "device", None)
    return device if isinstance(device, torch.device) else next(model.parameters()).device


def _pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def _collate(
    batch: Sequence[_Encoded], pad_id: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """Right-pad a batch; padded positions are masked out and labelled ``-100``."""
    width = max(len(item.input_ids) for item in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, item in enumerate(batch):
        length = len(item.input_ids)
        input_ids[row, :length] = torch.tensor(item.input_ids)
        labels[row, :length] = torch.tensor(item.labels)
        attention_mask[row, :length] = 1
    tensors = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
    return {key: value.to(device) for key, value in tensors.items()}


def _batch_nll(model: PreTrainedModel, tensors: dict[str, torch.Tensor]) -> list[float]:
    """Summed NLL (nats) of the labelled tokens of each row."""
    logits = model(
        input_ids=tensors["input_ids"], attention_mask=tensors["attention_mask"], use_cache=False
    ).logits
    shift_logits = logits[:, :-1, :].float()
    shift_labels = tensors["labels"][:, 1:].to(shift_logits.device)
    token_nll = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)),
        shift_labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    ).view(shift_labels.shape)
    return token_nll.sum(dim=1).tolist()


@contextmanager
def _eval_mode(model: PreTrainedModel) -> Iterator[None]:
    """Disable dropout for the duration of the block, restoring the previous mode after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        if was_training:
            model.train()


def _nll_many(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    encoded: Sequence[_Encoded],
    batch_size: int,
) -> list[float]:
    """Summed target NLL of every encoded pair, batched by similar length, in input order."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))
    results = [0.0] * len(encoded)
    device, pad_id = _model_device(model), _pad_id(tokenizer)
    with _eval_mode(model), torch.inference_mode():
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            tensors = _collate([encoded[i] for i in indices], pad_id, device)
            for index, nll in zip(indices, _batch_nll(model, tensors), strict=True):
                results[index] = nll
    return results


def sequence_nll(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt: str,
    target: str,
    *,
    max_length: int | None = None,
) -> tuple[float, int]:
    """Summed negative log-likelihood (nats) of ``target`` given ``prompt``, and token count.

    The count is the number of scored target tokens (see the module docstring).
    """
    encoded = _encode_pair(tokenizer, prompt, target, _resolve_max_length(model, max_length))
    (nll,) = _nll_many(model, tokenizer, [encoded], batch_size=1)
    return nll, encoded.num_scored


def perplexity(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[tuple[str, str]],
    *,
    max_length: int | None = None,
    batch_size: int = 8,
) -> PerplexityResult:
    """Corpus and per-sample perplexity of ``(prompt, target)`` pairs.

    Raises ``ValueError`` if ``pairs`` is empty, ``batch_size < 1`` or no target token is scored.
    """
    if not pairs:
        raise ValueError("pairs must not be empty")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    limit = _resolve_max_length(model, max_length)
    encoded = [_encode_pair(tokenizer, prompt, target, limit) for prompt, target in pairs]
    nlls = _nll_many(model, tokenizer, encoded, batch_size)
    counts = [item.num_scored for item in encoded]
    return _summarise(nlls, counts)


def _summarise(nlls: Sequence[float], counts: Sequence[int]) -> PerplexityResult:
    total_tokens = sum(counts)
    if total_tokens == 0:
        raise ValueError("no target tokens to score (all targets empty?)")
    empty = sum(1 for count in counts if count == 0)
    if empty:
        logger.warning("%d sample(s) have no scored target token; their perplexity is nan", empty)
    mean_nll = sum(nlls) / total_tokens
    per_sample = [_safe_exp(nll, count) for nll, count in zip(nlls, counts, strict=True)]
    return PerplexityResult(math.exp(mean_nll), per_sample, mean_nll, total_tokens)


def _safe_exp(nll: float, count: int) -> float:
    return math.exp(nll / count) if count else math.nan


__all__ = ["PerplexityResult", "perplexity", "sequence_nll"]
