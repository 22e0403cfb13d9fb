"""Linear layers through oneDNN on CPU (``torch.ops.mkldnn._linear_pointwise``) for inference.

torch's CPU ``linear``/``mm`` on float32 calls MKL's sgemm, which on this machine's AMD EPYC
cores runs at less than half the speed of oneDNN's inner product on the same dense weights:
16 rows x 768 x 2048 at 132 vs 290 GFLOP/s, 48 rows 180 vs 412 (2 threads). A 16-slot
decode step of the 76M model took 22.0 instead of 32.9 ms, the demo model's 3.3 instead of 4.6.
One-row products keep ``linear`` (the compiled step turns them into its own reductions, see
``compiled.py``), and so does anything that records gradients (training).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)


def available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


class OneDNNLinear(torch.nn.Linear):
    """``nn.Linear`` whose inference over more than one float32 row calls oneDNN; a layer's
    class is switched in place (copies, such as PEFT's ``modules_to_save``, keep it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // max(x.shape[-1], 1)
        if rows > 1 and x.dtype == torch.float32 and not torch.is_grad_enabled():
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [None], "")
        return F.linear(x, self.weight, self.bias)


def use_onednn_linear(model: torch.nn.Module) -> int:
    """Route ``model``'s float32 CPU ``nn.Linear`` layers through oneDNN for inference (in
    place; the weights are not copied). Returns how many layers were switched."""
    if not available():
        return 0
    switched = 0
    for module in model.modules():
        if type(module) is torch.nn.Linear and _fits(module.weight):
            module.__class__ = OneDNNLinear
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
