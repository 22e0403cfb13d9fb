"""Linear layers through oneDNN on CPU (``torch.ops.mkldnn._linear_pointwise``) for inference.

torch's CPU ``linear``/``mm`` on float32 calls MKL's sgemm, which on this machine's AMD EPYC
cores runs at less than half the speed of oneDNN's inner product on the same dense weights:
16 rows x 768 x 2048 at 132 vs 290 GFLOP/s, 48 rows 180 vs 412 (2 threads). A 16-slot
decode step of the 76M model took 22.0 instead of 32.9 ms, the demo model's 3.3 instead of 4.6.
Each layer also keeps its weight packed in oneDNN's blocked layout (one more copy of the
weights: +300 MB for the 76M model), which is faster again: 416 vs 211 GFLOP/s at 16 rows, and
the 76M model's 16-slot step 18.2 instead of 21.4 ms.
A small weight (at most ``SMALL_WEIGHT`` values) is copied transposed instead, ``(in, out)``,
for ``mm`` (MKL) to read in its own order: each oneDNN call costs some 30 us however small the
product, which dominated the demo model's layers (Intel Xeon, 2 threads, 16 rows: 256 x 704 in
30 us against 63 us packed, 128 x 256 in 6 against 36; 4 rows 8 against 36). With all its
layers transposed (its 1.5M-weight output layer, now packed, too) the demo's 16-slot step took
4.1 instead of 5.8 ms, 4 slots 1.8 instead of 3.0. Larger weights stay packed: with every
layer of the 76M model transposed, 16 HTTP clients got 0.96x the tokens per second (5 rounds).
Prompts read the plain weight, not a packed copy, and only the smallest layers' transposed
copies (``PROMPT_MM_WEIGHT``). Only batched decode steps read the copies, so
when a prompt follows one-row steps (one stream) or an idle spell, the copies have not been
read for a second or more, and a first read of them is then several times slower than hot on
this VM (the weights themselves sit on huge pages, ``hugepages.py``). 76M model, a 13-33 token
prompt after 64 one-row steps: 95-117 ms on the packed copies (4 KiB pages), 45-69 on the
plain weight, back to back both about 35-57 ms; on transposed copies of every layer, on huge
pages too, 80-107 ms against 53-74 on the plain weight.
One-row products keep ``linear`` (the compiled step turns them into its own reductions, see
``compiled.py``), and so does anything that records gradients (training).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

# Weights are packed for products of this many rows; the same blocked layout serves 4 to 128
# rows at the same speed (16 x 768 x 2048 products: 416 GFLOP/s against 211 on the dense
# weight and 130 through MKL; 4 rows 247 against 82).
PACK_ROWS = 16
SMALL_WEIGHT = 1 << 20  # a weight of at most this many values is copied transposed (see above)
# Prompts too read the transposed copy of a weight of at most this many values: their
# products are small enough that oneDNN's fixed cost per call counts (demo model, a 45-token
# prompt after 64 decode steps, in-process: 6.1-7.2 ms against 8.0-8.3 on the plain weights;
# the 77M model's k/v projections (196K values) 55.6-63.4 ms against 62.7-65.2).
PROMPT_MM_WEIGHT = 1 << 18


def available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


class OneDNNLinear(torch.nn.Linear):
    """``nn.Linear`` whose inference over more than one float32 row calls oneDNN (prompts,
    larger layers' batched steps) or ``mm`` (small layers' batched steps, and the smallest
    layers' prompts); a layer's class is switched in place (copies, such as PEFT's
    ``modules_to_save``, keep it)."""

    weight_t: torch.Tensor | None  # (in, out): a small weight transposed, for batched steps
    _packed: torch.Tensor | None = None  # a larger weight in oneDNN's blocked layout
    _packed_from: tuple[int, int] | None = None  # the weight copied: see ``pack``

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // max(x.shape[-1], 1)
        if rows > 1 and x.dtype == torch.float32 and not torch.is_grad_enabled():
            if is_prompt(x) and (self.weight_t is None or self.weight.numel() > PROMPT_MM_WEIGHT):
                return packed_linear(x, self.weight, self.bias)  # see the module's docstring
            if not torch.compiler.is_compiling():
                self.pack()
            if self.weight_t is not None:
                return rows_times(x, self.weight_t, self.bias)
            return packed_linear(
                x, self._packed if self._packed is not None else self.weight, self.bias
            )
        return F.linear(x, self.weight, self.bias)

    def pack(self) -> None:
        """Copy the weight for batched steps, again if the weight changed since."""
        weight = self.weight
        # A weight moved (``hugepages.py``: the same Parameter, new memory) keeps its copy;
        # inference tensors keep no version counter: only new memory is seen there.
        inference = weight.is_inference()
        source = (weight.data_ptr(), -1) if inference else (id(weight), weight._version)
        if self._packed_from == source:
            return
        if weight.numel() <= SMALL_WEIGHT:
            self.weight_t = weight.detach().t().contiguous()
        else:
            self._packed = pack_weight(weight.detach())
        self._packed_from = source

    def __getstate__(self) -> dict[str, Any]:
        # Copies (PEFT's ``modules_to_save``) pack their own weight: a packed tensor has no
        # storage to copy.
        state = super().__getstate__()
        state.pop("_packed", None)
        state.pop("_packed_from", None)
        return state


def is_prompt(x: torch.Tensor) -> bool:
    """Whether a linear layer's input holds a prompt's tokens: ``(rows, tokens, features)``
    with more than one token per row (a decode step has one)."""
    return x.dim() > 2 and x.shape[-2] > 1


def pack_weight(weight: torch.Tensor) -> torch.Tensor:
    """A float32 ``(out, in)`` weight in oneDNN's blocked layout (for ``_linear_pointwise``)."""
    return torch.ops.mkldnn._reorder_linear_weight(weight, PACK_ROWS)


def rows_times(x: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x`` (rows, ..., in) times an ``(in, out)`` weight through ``mm``/``addmm``."""
    flat = x.reshape(-1, x.shape[-1])
    out = torch.mm(flat, weight_t) if bias is None else torch.addmm(bias, flat, weight_t)
    return out.view(*x.shape[:-1], weight_t.shape[1])


def packed_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """``x`` times a weight from ``pack_weight`` (or a plain one), through oneDNN."""
    if torch.compiler.is_compiling():
        # The weight's sizes are constants of a dynamic-shape graph (prefill), not arguments
        # of each call.
        torch._dynamo.mark_static(weight)
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [None], "")


def use_onednn_linear(model: torch.nn.Module) -> int:
    """Route ``model``'s float32 CPU ``nn.Linear`` layers through oneDNN for inference (in
    place; each keeps a packed copy of its weight). Returns how many layers were switched."""
    if not available():
        return 0
    switched = 0
    for module in model.modules():
        if type(module) is torch.nn.Linear and _fits(module.weight):
            module.__class__ = OneDNNLinear
            module.register_buffer("weight_t", None, persistent=False)
            module.pack()
            switched += 1
    if switched:
        logger.info("%d linear layers run through oneDNN", switched)
    return switched


def _fits(weight: torch.Tensor) -> bool:
    return weight.device.type == "cpu" and weight.dtype == torch.float32


@contextmanager
def as_extern_calls_in_inductor() -> Iterator[None]:
    """While inductor compiles: ``OneDNNLinear``'s op runs as a call of the op as it is.
    Inductor's own lowering and fusions of it assume frozen, prepacked weights (constants of
    the graph), and its fusion patterns are registered at the first compile only with oneDNN
    enabled."""
    if not available():
        yield
        return
    from torch._inductor import lowering

    op = torch.ops.mkldnn._linear_pointwise.default
    saved = lowering.lowerings.get(op)
    lowering.lowerings[op] = lowering.fallback_handler(op, add_to_fallback_set=False)
    enabled = torch._C._get_mkldnn_enabled()
    torch._C._set_mkldnn_enabled(False)
    try:
        yield
    finally:
        torch._C._set_mkldnn_enabled(enabled)
        if saved is None:
            lowering.lowerings.pop(op, None)
        else:
            lowering.lowerings[op] = saved
