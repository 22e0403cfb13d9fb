"""The served model's weights moved onto transparent huge pages (engine/hugepages.py)."""

from __future__ import annotations

import mmap
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from gpt_service.config import DEMO_MODEL_DIR
from gpt_service.engine.hugepages import ALIGN, move_to_huge_pages
from gpt_service.engine.quantize import quantize_int8

pytestmark = pytest.mark.skipif(not hasattr(mmap, "MADV_HUGEPAGE"), reason="no MADV_HUGEPAGE")
THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def huge_kib_at(address: int) -> int:
    """AnonHugePages (KiB) of this process's mapping that holds ``address``."""
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and ":" not in head:
            start, end = (int(x, 16) for x in head.split("-"))
            inside = start <= address < end
        elif inside and line.startswith("AnonHugePages:"):
            return int(line.split()[1])
    raise AssertionError(f"no mapping holds {address:#x}")


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("int8", [False, True])
def test_weights_move_with_the_same_outputs_ties_and_alignment(int8: bool) -> None:
    model = AutoModelForCausalLM.from_pretrained(DEMO_MODEL_DIR).eval()
    if int8:
        quantize_int8(model, packed=False)
    ids = torch.tensor([[5, 17, 300, 42, 7, 99]])
    before = logits(model, ids)
    tied = model.config.tie_word_embeddings and not int8
    moved = move_to_huge_pages(model)
    weights = list(model.parameters()) + list(model.buffers())
    assert moved >= sum(w.numel() * w.element_size() for w in weights)  # tied ones once
    assert all(w.data_ptr() % ALIGN == 0 for w in weights)
    if tied:
        assert model.lm_head.weight is model.model.embed_tokens.weight
    torch.testing.assert_close(logits(model, ids), before, rtol=0, atol=0)
    first = next(model.parameters()).data_ptr()
    if THP.is_file() and "[never]" not in THP.read_text():
        assert huge_kib_at(first) >= 2048  # really on huge pages, not just copied


def test_a_model_under_one_huge_page_stays_where_it_is() -> None:
    layer = torch.nn.Linear(8, 8)
    where = layer.weight.data_ptr()
    assert move_to_huge_pages(layer) == 0
    assert layer.weight.data_ptr() == where


def test_a_failed_mapping_leaves_the_weights_where_they_are(monkeypatch: pytest.MonkeyPatch):
    """No memory for the block (or no THP support): the model loads as before, never a 500."""
    model = AutoModelForCausalLM.from_pretrained(DEMO_MODEL_DIR).eval()
    where = [p.data_ptr() for p in model.parameters()]

    def no_memory(*args: object, **kwargs: object) -> None:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(mmap, "mmap", no_memory)
    assert move_to_huge_pages(model) == 0
    assert [p.data_ptr() for p in model.parameters()] == where
