"""All tensor code of the engine: batched prefill and decode over one slotted KV cache.

The running batch shares one preallocated cache per layer, ``(slots, kv_heads, capacity,
head_dim)``. Slot ``i`` holds one sequence, right-aligned so that every sequence's last token
sits in column ``end - 1``; ``mask[i, t]`` says whether column ``t`` of slot ``i`` is a real
token. A decode step writes every slot's new key/value in place at column ``end`` (no copy of
the cache) and attends over the window ``[start, end]``, so it is one forward pass over
``(slots, 1)`` tokens.

Joiners are prefilled together in a fresh cache and copied into free slots; a finished
sequence only frees its slot. The buffers are reallocated (one copy) only when a step runs out
of columns or slots, or when most slots are free.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable
from collections.abc import Sequence as Seq
from typing import Any, NamedTuple

import torch
from transformers import DynamicCache
from transformers.cache_utils import Cache, CacheLayerMixin

from gpt_service.engine.compiled import (
    MIN_COLUMNS,
    CompiledDecode,
    Layout,
    bucket,
    slot_bucket,
)
from gpt_service.engine.sampling import RunOutput, Sampler
from gpt_service.engine.sequence import Sequence
from gpt_service.errors import InvalidRequest

logger = logging.getLogger(__name__)

BASE_ADAPTER = "__base__"  # PEFT's name for "no adapter" in mixed-adapter batches
CHUNK = 64  # spare columns allocated at a time
# Forwards of at least this much work (2 x parameters x tokens, in FLOPs) use every intra-op
# thread, smaller ones one. With the server's OpenMP spin (cli.main) a second thread pays off
# from a single row of the 5.9M demo model (12 MFLOP) on: over HTTP, one stream, 2 cores,
# 791 vs 658 tok/s (ITL 1.03 vs 1.35 ms; before that spin, threads slept between kernels and
# 1 thread won). Only tiny models (the tests' ~0.1M) stay on one thread.
PARALLEL_FLOPS = 5e6
# One step prefills joiners up to this much work (2 x parameters x padded prompt tokens; the
# first joiner always goes), so running rows wait about one decode step for newcomers, and a
# burst of arrivals is spread over steps: the first ones get their first token early and the
# rows do not all finish (and come back) in the same step.
PREFILL_STEP_FLOPS = 8e9


class SlotLayer(CacheLayerMixin):
    """One layer's keys/values in preallocated buffers; the runner owns ``start``/``end``."""

    def __init__(
        self,
        keys: torch.Tensor,
        values: torch.Tensor,
        start: int,
        end: int,
        window: int | None = None,
    ) -> None:
        super().__init__()
        self.keys, self.values = keys, values
        self.start, self.end = start, end
        self.window = window  # sliding-window layers attend to the last ``window`` columns
        self.is_initialized = True

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        raise RuntimeError("slot layers are created initialized")

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        new_end = self.end + key_states.shape[-2]
        self.keys[:, :, self.end : new_end] = key_states
        self.values[:, :, self.end : new_end] = value_states
        lo = self.start if self.window is None else max(self.start, new_end - self.window)
        return self.keys[:, :, lo:new_end], self.values[:, :, lo:new_end]

    def get_seq_length(self) -> int:
        return self.end - self.start

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.end - self.start + query_length, 0

    def get_max_length(self) -> int:
        return -1


class _StepBuffers(NamedTuple):
    """What every compiled decode step passes for one cache: its layers' buffers, their layout
    (kv heads, head dim, dtype) and the positions (a view of ``lens``)."""

    cache: Cache
    layout: Layout
    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    positions: torch.Tensor


class ModelRunner:
    def __init__(
        self,
        model: Any,
        device: torch.device,
        pad_id: int,
        compile_decode: bool = False,
        max_slots: int = 32,
        eos_ids: list[int] | None = None,
        max_threads: int = 0,
    ) -> None:
        self.model = model
        self.device = device
        self.pad_id = pad_id
        self.sampler = Sampler(eos_ids or [], device)
        # torch's thread count is per thread once set, and a new thread starts from the last
        # value any thread set: the engine thread sets its own at start (``use_threads``).
        self.max_threads = max_threads or os.cpu_count() or 1
        self._threads = 0
        self._flops_per_token = 2 * sum(p.numel() for p in model.parameters())
        self.slots: list[int | None] = []  # seq_id in each slot (None: free)
        self.slot_of: dict[int, int] = {}
        self.cache: Cache | None = None  # of SlotLayers while any slot is used
        self.mask: torch.Tensor | None = None  # (slots, capacity) bool
        self.lens: torch.Tensor | None = None  # (slots,) real tokens per slot = next position
        self.start = 0  # first column any used slot needs
        self.end = 0  # next column to write
        self._adapters: list[str] = []  # adapter name per slot (PEFT mixed batches)
        self._last: list[int] = []  # last token per slot (the next decode input)
        self.is_peft = hasattr(model, "peft_config")
        self._kwargs: dict[str, Any] = {"use_cache": True}
        self._cache_arg = "past_key_values"
        self._inspect_forward(model)
        self.compiled: CompiledDecode | None = None
        self._step: _StepBuffers | None = None
        self.max_slots = max_slots
        # Called on the engine thread right before each forward pass (the engine hands over
        # the last step's tokens there, so their delivery overlaps the pass, see engine.py).
        self.before_forward: Callable[[], None] | None = None
        if compile_decode:
            self.enable_compile(self.threads_for, max_slots)

    def enable_compile(
        self, threads_for: Callable[[int], int], max_slots: int = 32, **options: Any
    ) -> None:
        """Compiled decode steps (see ``compiled.py``) where the model allows: CPU, SDPA masks,
        no LoRA. Call before the first prefill; ``options`` go to ``CompiledDecode``."""
        self.max_slots = max_slots  # rows are never more than the engine's running cap
        if self.device.type != "cpu" or not self._sdpa or self.is_peft:
            logger.info("compiled decode not used for this model (needs CPU, SDPA, no LoRA)")
            return
        kwargs = dict(self._kwargs)
        self.compiled = CompiledDecode(
            self.model, kwargs, self._window, self._typed_masks, threads_for, **options
        )

    def threads_for(self, tokens: int) -> int:
        """All intra-op threads for big forwards, one for small ones (which gain nothing from
        a second thread and would take the core the event loop needs)."""
        big = self._flops_per_token * tokens >= PARALLEL_FLOPS
        return self.max_threads if big else 1

    def prefill_token_budget(self) -> int:
        """Padded prompt tokens one step prefills at most (see ``PREFILL_STEP_FLOPS``)."""
        return max(1, int(PREFILL_STEP_FLOPS // self._flops_per_token))

    def use_threads(self, tokens: int) -> None:
        """Set this thread's torch threads for a forward over ``tokens`` tokens."""
        threads = self.threads_for(tokens)
        if threads != self._threads:
            torch.set_num_threads(threads)
            self._threads = threads

    @torch.inference_mode()
    def run(self, seqs: Seq[Sequence], is_prefill: bool) -> RunOutput:
        """One forward pass (the joiners' prefill, or a decode step of every slot) and the
        next token of each of ``seqs``, as nano-vllm's ``ModelRunner.run``."""
        if is_prefill:
            self.use_threads(max(sum(s.num_tokens for s in seqs), len(self.slots)))
            self.sampler.start(seqs)
            logits = self.prefill(seqs)
        else:
            self.use_threads(len(self.slots))  # free slots are computed too
            logits = self.decode(seqs)
        return self.sampler(logits, seqs)

    def _inspect_forward(self, model: Any) -> None:
        base = model.get_base_model() if self.is_peft else model
        params = inspect.signature(base.forward).parameters
        if "logits_to_keep" in params:
            self._kwargs["logits_to_keep"] = 1  # only the last position's logits are needed
        # transformers renamed ``past_key_values`` to ``cache`` in 5.x.
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        # A ready 4D boolean mask passes through transformers' mask builders (5.x) unchanged.
        config = base.config
        self._sdpa = "cache" in params and getattr(config, "_attn_implementation", None) == "sdpa"
        # Sliding-window layers, as transformers' own cache decides them: rows are right-aligned,
        # so a window is the same last columns for every row.
        windows = {
            layer.sliding_window
            for layer in DynamicCache(config=config).layers
            if getattr(layer, "is_sliding", False)
        }
        if len(windows) > 1 or (windows and not self._sdpa):
            raise InvalidRequest(
                f"{type(base).__name__} uses sliding-window attention that the engine supports "
                "only with one window size and the 'sdpa' attention implementation"
            )
        self._window: int | None = windows.pop() if windows else None
        # Models with per-layer types take a mask per type; others (Mistral) one for all layers.
        self._typed_masks = getattr(config, "layer_types", None) is not None

    def set_model(self, model: Any) -> None:
        """Swap in a wrapped model (a ``PeftModel`` after the first adapter); engine thread only."""
        self.model = model
        self.is_peft = hasattr(model, "peft_config")
        self._inspect_forward(model)
        if self.is_peft and self.compiled is not None:
            # PEFT wraps the base model's layers in place: the graphs no longer apply.
            logger.info("LoRA adapters attached: decode runs eagerly from now on")
            self.compiled.stop()
            self.compiled = None

    @property
    def num_rows(self) -> int:
        """Slots holding a sequence."""
        return len(self.slot_of)

    @property
    def num_slots(self) -> int:
        """Rows a decode step computes (free slots included)."""
        return len(self.slots)

    @property
    def capacity(self) -> int:
        return 0 if self.mask is None else self.mask.shape[1]

    def _forward(self, adapters: list[str], cache: Cache, **inputs: Any) -> torch.Tensor:
        kwargs = dict(self._kwargs)
        kwargs[self._cache_arg] = cache
        if self.is_peft:
            kwargs["adapter_names"] = adapters
        out = self.model(**inputs, **kwargs)
        return out.logits[:, -1, :].float()  # (B, V)

    @torch.inference_mode()
    def prefill(self, seqs: Seq[Sequence]) -> torch.Tensor:
        """Run the prompts of ``seqs`` and give each a slot. Returns last logits ``(B, V)``."""
        width = max(s.num_tokens for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.bool)
        for row, seq in enumerate(seqs):
            tokens = seq.prompt_ids + seq.output_ids
            ids[row, width - len(tokens) :] = torch.tensor(tokens)
            mask[row, width - len(tokens) :] = True
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        adapters = [s.adapter or BASE_ADAPTER for s in seqs]
        if self.before_forward is not None:
            self.before_forward()
        cache = DynamicCache(config=self.model.config)
        compiled = self.compiled
        out = None
        if compiled is not None and compiled.prefill_ready(len(seqs), width):
            out = compiled.prefill(ids, positions, mask)
        if out is not None:  # the graph's keys/values in the model's own layers (and windows)
            logits, keys, values = out
            for layer, k, v in zip(cache.layers, keys, values, strict=True):
                layer.keys, layer.values, layer.is_initialized = k, v, True
        else:
            logits = self._forward(
                adapters, cache, input_ids=ids, attention_mask=mask, position_ids=positions
            )
        self._place(seqs, cache, mask, adapters)
        return logits

    @torch.inference_mode()
    def decode(self, seqs: Seq[Sequence]) -> torch.Tensor:
        """One token for every slot. Returns the logits ``(len(seqs), V)`` in ``seqs`` order."""
        if len(seqs) != len(self.slot_of) or any(s.seq_id not in self.slot_of for s in seqs):
            raise ValueError("decode batch does not match the cache slots")
        if self.end == self.capacity:
            self._relayout(self._used_slots(), extra_slots=0, min_end=0)
        assert self.cache is not None and self.mask is not None and self.lens is not None
        for seq in seqs:
            self._last[self.slot_of[seq.seq_id]] = seq.last_token
        ids = torch.tensor(self._last, device=self.device).unsqueeze(1)  # (S, 1)
        if self.before_forward is not None:
            self.before_forward()
        step = self._compiled_step()
        if step is not None:  # sets the mask's column and moves ``lens`` on itself
            logits = self.compiled.run(  # type: ignore[union-attr]
                ids,
                step.positions,
                self.mask,
                torch.tensor([self.end], device=self.device),
                step.keys,
                step.values,
            )
        else:
            self.mask[:, self.end] = True  # free slots attend to their own token only
            logits = self._forward(
                self._adapters,
                self.cache,
                input_ids=ids,
                attention_mask=self._decode_mask(),
                position_ids=self.lens.unsqueeze(1),
            )
            self.lens += 1
        self._advance_columns(1)
        order = [self.slot_of[s.seq_id] for s in seqs]
        if order == list(range(len(self.slots))):
            return logits
        return logits[torch.tensor(order, device=logits.device)]

    def _compiled_step(self) -> _StepBuffers | None:
        """The compiled step's buffers when a graph takes this step (``None``: eager). They are
        gathered once per cache (a relayout makes a new one), not every step."""
        if self.compiled is None or self.cache is None or self.lens is None:
            return None
        step = self._step
        if step is None or step.cache is not self.cache:
            layers = self.cache.layers
            step = self._step = _StepBuffers(
                self.cache,
                [(la.keys.shape[1], la.keys.shape[3], la.keys.dtype) for la in layers],
                [la.keys for la in layers],
                [la.values for la in layers],
                self.lens.unsqueeze(1),  # a view: ``lens += 1`` moves it too
            )
        return step if self.compiled.ready((len(self.slots), self.capacity), step.layout) else None

    def _decode_mask(self) -> torch.Tensor | dict[str, torch.Tensor]:
        assert self.mask is not None
        full = self.mask[:, self.start : self.end + 1]
        if not self._sdpa:  # 2D: transformers builds the 4D mask
            return full
        # The 4D mask SDPA takes, so transformers need not build it every step.
        full = full[:, None, None, :]
        if self._window is None:
            return full
        lo = max(self.start, self.end + 1 - self._window)  # as SlotLayer.update slices
        sliding = self.mask[:, None, None, lo : self.end + 1]
        if not self._typed_masks:
            return sliding
        return {"full_attention": full, "sliding_attention": sliding}

    @torch.inference_mode()
    def release(self, seq_ids: Seq[int]) -> None:
        """Free the slots of finished or cancelled sequences."""
        self.sampler.release(seq_ids)
        freed = [self.slot_of.pop(sid) for sid in seq_ids if sid in self.slot_of]
        if not freed:
            return
        if not self.slot_of:
            self.reset()
            return
        assert self.mask is not None and self.lens is not None
        for slot in freed:
            self.slots[slot] = None
            self._adapters[slot] = BASE_ADAPTER
            self._last[slot] = self.pad_id
        index = torch.tensor(freed, device=self.device)
        self.mask[index] = False
        self.lens[index] = 0
        used = self._used_slots()
        fewer = len(used) if self.compiled is None else slot_bucket(len(used), self.max_slots)
        if len(used) * 2 < len(self.slots) and fewer < len(self.slots):  # mostly holes
            self._relayout(used, extra_slots=0, min_end=0)
        else:
            self._set_window(int(self.mask[used].any(dim=0).nonzero()[0]), self.end)

    def reset(self) -> None:
        self.sampler.generators.clear()
        self.slots, self.slot_of, self._adapters, self._last = [], {}, [], []
        self.cache = self.mask = self.lens = None
        self._step = None
        self.start = self.end = 0

    # ---- slot bookkeeping ---------------------------------------------------------------
    def _used_slots(self) -> list[int]:
        return [i for i, sid in enumerate(self.slots) if sid is not None]

    def _set_window(self, start: int, end: int) -> None:
        self.start, self.end = start, end
        if self.cache is not None:
            for layer in self.cache.layers:
                layer.start, layer.end = start, end

    def _advance_columns(self, n: int) -> None:
        self._set_window(self.start, self.end + n)

    def _place(
        self, seqs: Seq[Sequence], new: DynamicCache, mask: torch.Tensor, adapters: list[str]
    ) -> None:
        """Copy freshly prefilled sequences (left-padded to ``width``) into free slots."""
        width = mask.shape[1]
        free = [i for i, sid in enumerate(self.slots) if sid is None]
        if self.cache is None or len(free) < len(seqs) or width > self.end:
            self._relayout(self._used_slots(), len(seqs), min_end=width, template=new.layers)
            free = [i for i, sid in enumerate(self.slots) if sid is None]
        assert self.cache is not None and self.mask is not None and self.lens is not None
        targets = free[: len(seqs)]
        index = torch.tensor(targets, device=self.device)
        lo = self.end - width
        for layer, fresh in zip(self.cache.layers, new.layers, strict=True):
            kept = fresh.keys.shape[2]  # sliding-window layers keep only the last columns
            layer.keys[index, :, self.end - kept : self.end] = fresh.keys
            layer.values[index, :, self.end - kept : self.end] = fresh.values
        self.mask[index] = False
        self.mask[index, lo : self.end] = mask
        self.lens[index] = mask.sum(dim=1)
        for slot, seq, adapter in zip(targets, seqs, adapters, strict=True):
            self.slots[slot] = seq.seq_id
            self.slot_of[seq.seq_id] = slot
            self._adapters[slot] = adapter
        first_used = int(mask.any(dim=0).nonzero()[0]) + lo
        self._set_window(min(self.start, first_used), self.end)

    def _relayout(
        self,
        keep: list[int],
        extra_slots: int,
        min_end: int,
        template: list[Any] | None = None,
    ) -> None:
        """Fresh buffers holding the ``keep`` slots' window, room for ``extra_slots`` more and
        at least ``min_end`` columns left of the write position, plus spare columns. Buffer
        shapes come from the current cache or ``template`` (the layers of a prefill cache)."""
        old = self.cache
        layers_like = old.layers if old is not None else template
        assert layers_like is not None
        width = self.end - self.start if keep else 0
        end = max(width, min_end)
        capacity = end + max(CHUNK, width // 2)
        num_slots = len(keep) + max(extra_slots, 0)
        if self.compiled is not None:  # shapes in buckets: a few graphs cover every step
            capacity = bucket(capacity, MIN_COLUMNS)
            num_slots = slot_bucket(num_slots, self.max_slots)
        index = torch.tensor(keep, device=self.device)
        layers: list[SlotLayer] = []
        for i, like in enumerate(layers_like):
            _, heads, _, head_dim = like.keys.shape
            shape = (num_slots, heads, capacity, head_dim)
            keys = torch.zeros(shape, dtype=like.keys.dtype, device=self.device)
            values = torch.zeros(shape, dtype=like.values.dtype, device=self.device)
            if keep and old is not None:
                keys[: len(keep), :, end - width : end] = old.layers[i].keys[index][
                    :, :, self.start : self.end
                ]
                values[: len(keep), :, end - width : end] = old.layers[i].values[index][
                    :, :, self.start : self.end
                ]
            window = (
                like.window
                if isinstance(like, SlotLayer)
                else (like.sliding_window if getattr(like, "is_sliding", False) else None)
            )
            layers.append(SlotLayer(keys, values, end - width, end, window))
        mask = torch.zeros(num_slots, capacity, dtype=torch.bool, device=self.device)
        lens = torch.zeros(num_slots, dtype=torch.long, device=self.device)
        if keep and self.mask is not None and self.lens is not None:
            mask[: len(keep), end - width : end] = self.mask[index][:, self.start : self.end]
            lens[: len(keep)] = self.lens[index]
        spare = num_slots - len(keep)
        self.slots = [self.slots[i] for i in keep] + [None] * spare
        self.slot_of = {sid: i for i, sid in enumerate(self.slots) if sid is not None}
        self._adapters = [self._adapters[i] for i in keep] + [BASE_ADAPTER] * spare
        self._last = [self._last[i] for i in keep] + [self.pad_id] * spare
        self.cache, self.mask, self.lens = Cache(layers=layers), mask, lens
        self._step = None  # the old buffers go now, not at the next step
        self._set_window(end - width, end)
