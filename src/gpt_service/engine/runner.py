"""All tensor code of the engine: batched prefill and decode over one ragged KV cache.

The running batch shares one left-padded cache: row ``i`` holds one sequence, column ``t``
one cache slot, and ``mask[i, t]`` says whether that slot is a real token. New sequences are
prefilled together (left-padded among themselves) and merged in by padding both caches to
the same width; finished rows are cut out and all-padding leading columns trimmed, so a
decode step is always one forward pass over ``(B, 1)`` tokens.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence as Seq
from typing import Any

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from gpt_service.engine.sequence import Sequence

BASE_ADAPTER = "__base__"  # PEFT's name for "no adapter" in mixed-adapter batches


class ModelRunner:
    def __init__(self, model: Any, device: torch.device, pad_id: int) -> None:
        self.model = model
        self.device = device
        self.pad_id = pad_id
        self.rows: list[int] = []  # seq_id of each cache row, in row order
        self.cache: DynamicCache | None = None
        self.mask: torch.Tensor | None = None  # (B, T) long, 1 = real token
        self.is_peft = hasattr(model, "peft_config")
        self._kwargs: dict[str, Any] = {"use_cache": True}
        self._cache_arg = "past_key_values"
        self._inspect_forward(model)

    def _inspect_forward(self, model: Any) -> None:
        base = model.get_base_model() if self.is_peft else model
        params = inspect.signature(base.forward).parameters
        if "logits_to_keep" in params:
            self._kwargs["logits_to_keep"] = 1  # only the last position's logits are needed
        # transformers renamed ``past_key_values`` to ``cache`` in 5.x.
        self._cache_arg = "cache" if "cache" in params else "past_key_values"

    def set_model(self, model: Any) -> None:
        """Swap in a wrapped model (a ``PeftModel`` after the first adapter); engine thread only."""
        self.model = model
        self.is_peft = hasattr(model, "peft_config")
        self._inspect_forward(model)

    @property
    def num_rows(self) -> int:
        return len(self.rows)

    @property
    def cache_width(self) -> int:
        return 0 if self.mask is None else self.mask.shape[1]

    def _forward(self, seqs: Seq[Sequence], cache: DynamicCache, **inputs: Any) -> torch.Tensor:
        kwargs = dict(self._kwargs)
        kwargs[self._cache_arg] = cache
        if self.is_peft:
            kwargs["adapter_names"] = [s.adapter or BASE_ADAPTER for s in seqs]
        out = self.model(**inputs, **kwargs)
        return out.logits[:, -1, :].float()  # (B, V)

    @torch.inference_mode()
    def prefill(self, seqs: Seq[Sequence]) -> torch.Tensor:
        """Run the prompts of ``seqs`` and add them as new rows. Returns last logits ``(B, V)``."""
        width = max(s.num_tokens for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, seq in enumerate(seqs):
            tokens = seq.prompt_ids + seq.output_ids
            ids[row, width - len(tokens) :] = torch.tensor(tokens)
            mask[row, width - len(tokens) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        logits = self._forward(
            seqs, cache, input_ids=ids, attention_mask=mask, position_ids=positions
        )
        self._merge([s.seq_id for s in seqs], cache, mask)
        return logits

    @torch.inference_mode()
    def decode(self, seqs: Seq[Sequence]) -> torch.Tensor:
        """One token for every row; ``seqs`` must be in row order. Returns logits ``(B, V)``."""
        if [s.seq_id for s in seqs] != self.rows:
            raise ValueError("decode batch does not match the cache rows")
        assert self.mask is not None
        ids = torch.tensor([[s.last_token] for s in seqs], device=self.device)  # (B, 1)
        positions = self.mask.sum(dim=1, keepdim=True)  # (B, 1): real tokens so far
        self.mask = F.pad(self.mask, (0, 1), value=1)
        assert self.cache is not None
        return self._forward(
            seqs, self.cache, input_ids=ids, attention_mask=self.mask, position_ids=positions
        )

    def release(self, seq_ids: Seq[int]) -> None:
        """Drop the rows of finished or cancelled sequences and free their cache."""
        gone = set(seq_ids) & set(self.rows)
        if not gone:
            return
        keep = [i for i, sid in enumerate(self.rows) if sid not in gone]
        self.rows = [self.rows[i] for i in keep]
        if not keep:
            self.reset()
            return
        assert self.cache is not None and self.mask is not None
        index = torch.tensor(keep, device=self.device)
        self.mask = self.mask[index]
        start = int((self.mask.sum(dim=0) > 0).nonzero()[0])  # first column anyone uses
        self.mask = self.mask[:, start:]
        for layer in self.cache.layers:
            layer.keys = layer.keys[index, :, start:]
            layer.values = layer.values[index, :, start:]

    def reset(self) -> None:
        self.rows, self.cache, self.mask = [], None, None

    def _merge(self, seq_ids: list[int], cache: DynamicCache, mask: torch.Tensor) -> None:
        if self.cache is None or self.mask is None:
            self.rows, self.cache, self.mask = list(seq_ids), cache, mask
            return
        width = max(self.cache_width, mask.shape[1])
        old_pad, new_pad = width - self.cache_width, width - mask.shape[1]
        self.mask = torch.cat([F.pad(self.mask, (old_pad, 0)), F.pad(mask, (new_pad, 0))])
        for old, new in zip(self.cache.layers, cache.layers, strict=True):
            # keys/values are (B, heads, T, head_dim): pad T on the left.
            old.keys = torch.cat(
                [F.pad(old.keys, (0, 0, old_pad, 0)), F.pad(new.keys, (0, 0, new_pad, 0))]
            )
            old.values = torch.cat(
                [F.pad(old.values, (0, 0, old_pad, 0)), F.pad(new.values, (0, 0, new_pad, 0))]
            )
        self.rows.extend(seq_ids)
