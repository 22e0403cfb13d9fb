"""Mean-pooled embeddings on real (random) Llama and GPT-2 models, with and without LoRA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from gpt_service.engine.embeddings import embed_token_lists, mean_pool


def test_mean_pool_averages_only_real_tokens():
    hidden = torch.arange(12, dtype=torch.float32).reshape(2, 3, 2)  # (B=2, T=3, H=2)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    pooled = mean_pool(hidden, mask)
    assert torch.allclose(pooled[0], hidden[0, :2].mean(dim=0))
    assert torch.allclose(pooled[1], hidden[1].mean(dim=0))


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_vectors_do_not_depend_on_batch_padding(tiny_dir: Path, name: str):
    path = tiny_dir / "models" / name
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    texts = ["hello world, this is a tiny test corpus", "你好"]
    ids = [tokenizer.encode(t) for t in texts]
    batch = embed_token_lists(model, ids, tokenizer.pad_token_id)
    alone = embed_token_lists(model, ids[1:], tokenizer.pad_token_id)
    assert torch.allclose(torch.tensor(batch[1]), torch.tensor(alone[0]), atol=1e-5)
    norms = torch.tensor(batch).norm(dim=-1)
    assert torch.allclose(norms, torch.ones(2), atol=1e-5)
    raw = embed_token_lists(model, ids, tokenizer.pad_token_id, normalize=False)
    assert not torch.allclose(torch.tensor(raw).norm(dim=-1), torch.ones(2), atol=1e-3)


def test_adapter_names_select_lora_or_base(tiny_dir: Path):
    from peft import LoraConfig, get_peft_model

    path = tiny_dir / "models" / "tiny-llama"
    tokenizer = AutoTokenizer.from_pretrained(path)
    ids = [tokenizer.encode("hello world")]
    base = AutoModelForCausalLM.from_pretrained(path).eval()
    expected_base = embed_token_lists(base, ids, tokenizer.pad_token_id)
    torch.manual_seed(0)
    config = LoraConfig(
        r=4, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    peft_model = get_peft_model(base, config, adapter_name="ft").eval()
    with_base = embed_token_lists(peft_model, ids, tokenizer.pad_token_id, adapter=None)
    with_lora = embed_token_lists(peft_model, ids, tokenizer.pad_token_id, adapter="ft")
    assert torch.allclose(torch.tensor(with_base), torch.tensor(expected_base), atol=1e-5)
    assert not torch.allclose(torch.tensor(with_lora), torch.tensor(expected_base), atol=1e-3)
