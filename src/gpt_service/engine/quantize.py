"""Weight-only int8 linear layers for serving (``quantization: int8``), the counterpart of
llama.cpp's Q8_0: a one-row decode step reads a quarter of float32's bytes per weight.

Each ``nn.Linear`` of the model, the output head included, keeps its weight as int8 with one
scale per output channel (symmetric: the scale is the row's largest magnitude / 127). One row
is ``linear(x, int8.to(x.dtype)) * scale``: in the compiled one-slot step that product is a
reduction (``compiled.py``) reading the int8 weights directly. The 77M model's one-slot step
alone takes 6.4 ms instead of 15.4 ms in float32 (2 threads; ``tests``: greedy tokens the same
compiled, eager, alone, in batches and by ``generate`` on the int8 model). torchao's own int8
weight-only tensors ran that model's step in 18.5 ms (float32 activations) or 10.3 ms
(bfloat16, compiled) here, against 17.5 ms unquantized through the same ``torch.compile``:
hence a layer of our own.

Products of more than one row are bound by arithmetic, not by reading weights, and each layer
keeps copies in oneDNN's blocked layout for them (``onednn.py``):

- a batched decode step (rows of one token each) takes the dequantized float32 weight, as fast
  as float32 layers (dequantizing per product instead: 77M model, 16-slot step 58 vs 38 ms);
- a prompt's tokens (prefill), on CPUs with AMX, take the int8 values as bfloat16 (exact) with
  the inputs and sums rounded to bfloat16 (oneDNN runs them on AMX tiles): 77M model, 40-token
  prompt 19.8 ms against 45.7 ms on the float32 copy. Prompts alone or in batches take the same
  path, so greedy tokens stay the same alone and in any batch.

Memory per weight: 1 byte, plus 4 for the float32 copy and 2 for the bfloat16 one, against 8
for float32 layers with their packed copy; the one-row steps read the int8 byte only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gpt_service.engine import onednn

_QMAX = 127


def amx_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (AMX), as torch's cpuinfo
    sees it; oneDNN's bfloat16 products elsewhere would be emulated, and slower."""
    get_capabilities = getattr(torch.cpu, "get_capabilities", None)  # not in every torch
    capabilities = get_capabilities() if get_capabilities is not None else {}
    return bool(capabilities.get("amx_bf16")) and bool(capabilities.get("amx_tile"))


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
        self.copies_embeddings = False  # an output head tied to the input embeddings
        self._packed: torch.Tensor | None = None  # dequantized, for batched decode steps
        self._packed_bf16: torch.Tensor | None = None  # the int8 values, for prompts (AMX)

    def dequantized(self) -> torch.Tensor:
        return self.qweight.to(self.scale.dtype) * self.scale[:, None]

    def pack(self, bf16: bool | None = None) -> None:
        """Keep copies in oneDNN's layout: the dequantized float32 weight, and for prompts the
        int8 values as bfloat16 (exact) when ``bf16`` (default: on CPUs with AMX)."""
        if not onednn.available() or self.scale.dtype != torch.float32:
            return
        self._packed = onednn.pack_weight(self.dequantized())
        use_bf16 = amx_bf16() if bf16 is None else bf16
        self._packed_bf16 = (
            onednn.pack_weight(self.qweight.to(torch.bfloat16)) if use_bf16 else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        packed, prompt = self._packed, self._packed_bf16
        sums = None
        if packed is not None and x.dtype == torch.float32 and not torch.is_grad_enabled():
            if prompt is not None and onednn.is_prompt(x):
                sums = onednn.packed_linear(x.to(torch.bfloat16), prompt).to(x.dtype)
            elif x.numel() > x.shape[-1]:  # several rows
                return onednn.packed_linear(x, packed, self.bias)
        if sums is None:
            sums = F.linear(x, self.qweight.to(x.dtype))
        out = sums * self.scale
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
    get_embeddings = getattr(model, "get_input_embeddings", None)
    embeddings = get_embeddings() if get_embeddings is not None else None
    for parent, name, child in targets:
        layer = Int8Linear(child)
        layer.copies_embeddings = embeddings is not None and child.weight is embeddings.weight
        if packed and child.weight.device.type == "cpu":
            layer.pack()
        setattr(parent, name, layer)
    return len(targets)


def int8_weights(model: torch.nn.Module) -> int:
    """The model's weights held as int8 (an int8 copy of the embeddings not counted)."""
    return sum(
        m.qweight.numel()
        for m in model.modules()
        if isinstance(m, Int8Linear) and not m.copies_embeddings
    )


def is_quantized(model: torch.nn.Module) -> bool:
    return any(isinstance(m, Int8Linear) for m in model.modules())
