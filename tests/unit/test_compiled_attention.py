"""One-query attention in compiled decode steps (engine/compiled.py ``_one_query_attention``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch._inductor.utils import run_and_get_code

from gpt_service.engine.compiled import _one_query_attention, inductor_gemv

KERNEL = "aoti_torch_cpu__scaled_dot_product_flash_attention_for_cpu"  # its call (C++ wrapper)


def _inputs(heads: int, kv_heads: int, bool_mask: bool):
    torch.manual_seed(0)
    rows, columns, dim = 4, 9, 16
    q = torch.randn(rows, heads, 1, dim)
    k, v = torch.randn(2, rows, kv_heads, columns, dim)
    seen = torch.ones(rows, 1, 1, columns, dtype=torch.bool)
    seen[1, ..., 5:] = False  # a shorter row
    seen[3] = False  # a padding slot: sees nothing
    if bool_mask:
        return q, k, v, seen
    return q, k, v, torch.zeros(seen.shape).masked_fill(~seen, float("-inf"))


@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (4, 2), (6, 1)])
@pytest.mark.parametrize("bool_mask", [True, False])
def test_it_gives_sdpas_result(heads: int, kv_heads: int, bool_mask: bool) -> None:
    q, k, v, mask = _inputs(heads, kv_heads, bool_mask)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    out, _ = _one_query_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, expected)
    assert out[3].abs().max() == 0  # zeros, not NaNs, where a row sees no column


def test_prompts_keep_the_kernel() -> None:
    q = torch.randn(1, 2, 3, 8)
    assert _one_query_attention(q, q, q) is NotImplemented


def test_a_compiled_step_runs_it_instead_of_the_flash_kernel() -> None:
    q, k, v, mask = _inputs(4, 2, bool_mask=True)

    def step(q, k, v, mask):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)

    compiled = torch.compile(step, backend=inductor_gemv, dynamic=False)
    with torch.inference_mode():
        out, code = run_and_get_code(compiled, q, k, v, mask)
    torch.testing.assert_close(out, step(q, k, v, mask))
    assert KERNEL not in "".join(code)
    # A prompt (several queries) still calls the kernel.
    prompt = torch.randn(4, 4, 3, 16)
    with torch.inference_mode():
        _, code = run_and_get_code(compiled, prompt, k, v, mask)
    assert KERNEL in "".join(code)
