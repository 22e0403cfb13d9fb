"""Linear layers through oneDNN on CPU (``torch.ops.mkldnn._linear_pointwise``) for inference.

torch's CPU ``linear``/``mm`` on float32 calls MKL's sgemm, which on this machine's AMD EPYC
cores runs at less than half the speed of oneDNN's inner product on the same dense weights:
16 rows x 768 x 2048 at 132 vs 290 GFLOP/s, 48 rows 180 vs 412 (2 threads). A 16-slot
decode step of the 76M model took 22.0 instead of 32.9 ms, the demo model's 3.3 instead of 4.6.
Each layer also keeps its weight packed in oneDNN's blocked layout (one more copy of the
weights: +300 MB for the 76M model), which is faster again: 416 vs 211 GFLOP/s at 16 rows, and
the 76M model's 16-slot step 18.2 instead of 21.4 ms.
Prompts read the plain weight, not the packed copy. Only batched decode steps read the packed
copies, so when a prompt follows one-row steps (one stream) or an idle spell, the copies have
not been read for a second or more, and a first read of memory on 4 KiB pages is then several
times slower than hot on this VM (the weights themselves sit on huge pages, ``hugepages.py``).
76M model, a 13-33 token prompt after 64 one-row steps: 95-117 ms on the packed copies, 45-69
on the plain weight; back to back, both about 35-57 ms.
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


def available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


class OneDNNLinear(torch.nn.Linear):
    """``nn.Linear`` whose inference over more than one float32 row calls oneDNN; a layer's
    class is switched in place (copies, such as PEFT's ``modules_to_save``, keep it)."""

    _packed: torch.Tensor | None = None  # the weight in oneDNN's blocked layout
    _packed_from: tuple[int, int] | None = None  # (data pointer, version) of the weight packed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // max(x.shape[-1], 1)
        if rows > 1 and x.dtype == torch.float32 and not torch.is_grad_enabled():
            if is_prompt(x):
                weight = self.weight  # see the module's docstring
            else:
                weight = self._packed if torch.compiler.is_compiling() else self.pack()
                if weight is None:  # a copy traced before its first eager call
                    weight = self.weight
            return packed_linear(x, weight, self.bias)
        return F.linear(x, self.weight, self.bias)

    def pack(self) -> torch.Tensor:
        """The weight in oneDNN's blocked layout, packed again if the weight changed since."""
        weight = self.weight
        # Inference tensors keep no version counter: only a new weight is seen there.
        source = (weight.data_ptr(), -1 if weight.is_inference() else weight._version)
        if self._packed is None or self._packed_from != source:
            self._packed = pack_weight(weight.detach())
            self._packed_from = source
        return self._packed

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
