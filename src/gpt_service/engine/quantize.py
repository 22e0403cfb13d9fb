"""Weight-only int8 linear layers for serving (``quantization: int8``), the counterpart of
llama.cpp's Q8_0: a quarter of float32's bytes per weight, activations stay in float.

Each ``nn.Linear`` of the model's blocks keeps its weight as int8 with one scale per output
channel (symmetric, the scheme of torchao's ``Int8WeightOnlyConfig``), the output head too. A forward dequantizes in the product:
``linear(x, int8.to(x.dtype)) * scale``. In the compiled one-slot decode step the product is a
reduction (``compiled.py``) that reads the int8 weights directly: the 84 products of the 77M
model take 2.6 ms instead of 11.5 ms in float32 (2 threads). torchao's own int8 weight-only
tensors ran the same model's step in 18.5 ms (float32 activations) or 10.3 ms (bfloat16,
compiled) here, against 17.5 ms unquantized: hence a layer of our own.

Products of more than one row (prefills, batched decode steps) are bound by arithmetic, not
by reading weights: with oneDNN (``onednn.py``) each layer also keeps its dequantized weight
packed in oneDNN's blocked layout, as float32 layers do, and those products run as fast as
float32's. Dequantizing per product instead made a 16-slot step of the 77M model 36 -> 58 ms.
Memory: the int8 weights, the packed copy and the float embeddings (77M model: about 400 MB
against float32's 620 MB with its packed copy).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gpt_service.engine import onednn

_QMAX = 127


class Int8Linear(torch.nn.Module):
    """``nn.Linear`` with an int8 weight and a float scale per output channel (inference)."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        weight = linear.weight.detach()
        scale = weight.float().abs().amax(dim=1).clamp(min=1e-12) / _QMAX
        qweight = torch.round(weight.float() / scale[:, None]).clamp(-_QMAX, _QMAX)
        self.register_buffer("qweight", qweight.to(torch.int8))
        self.register_buffer("scale", scale.to(weight.dtype))
        self.bias = linear.bias
        self._packed: torch.Tensor | None = None  # the dequantized weight, packed by oneDNN

    def dequantized(self) -> torch.Tensor:
        return self.qweight.to(self.scale.dtype) * self.scale[:, None]

    def pack(self) -> None:
        """Keep the dequantized weight in oneDNN's layout for products of several rows."""
        if onednn.available() and self.scale.dtype == torch.float32:
            self._packed = onednn.pack_weight(self.dequantized())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // max(x.shape[-1], 1)
        packed = self._packed
        if (
            rows > 1
            and packed is not None
            and x.dtype == torch.float32
            and not torch.is_grad_enabled()
        ):
            if torch.compiler.is_compiling():
                torch._dynamo.mark_static(packed)  # sizes as constants (see OneDNNLinear)
            return torch.ops.mkldnn._linear_pointwise(x, packed, self.bias, "none", [None], "")
        out = F.linear(x, self.qweight.to(x.dtype)) * self.scale
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def quantize_int8(model: torch.nn.Module, packed: bool = True) -> int:
    """Replace ``model``'s float ``nn.Linear`` layers by ``Int8Linear``, in place; an output
    head tied to the input embeddings gets an int8 copy (the lookup keeps the float table).
    ``packed``: each also keeps its weight packed for oneDNN (CPU float32, see above).
    Returns how many layers were replaced."""
    targets = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if isinstance(child, torch.nn.Linear) and child.weight.is_floating_point()
    ]
    for parent, name, child in targets:
        layer = Int8Linear(child)
        if packed and child.weight.device.type == "cpu":
            layer.pack()
        setattr(parent, name, layer)
    return len(targets)


def is_quantized(model: torch.nn.Module) -> bool:
    return any(isinstance(m, Int8Linear) for m in model.modules())
