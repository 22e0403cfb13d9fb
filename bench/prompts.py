"""Bench prompts of varied length (Chinese and English) and the ~100M random model."""

from __future__ import annotations

import random
from pathlib import Path

BASE = [
    "你好",
    "什么是机器学习？",
    "你好，请介绍一下人工智能。",
    "介绍一下Python",
    "What is machine learning?",
    "Tell me about Python and why people like to use it for data science.",
    "写一首诗，关于秋天的月亮和远方的朋友。",
    "什么是深度学习？它和机器学习有什么区别？请详细说明神经网络的层次结构。",
]


def make_prompts(n: int, seed: int = 0) -> list[str]:
    """``n`` prompts whose lengths vary from a few to ~60 tokens."""
    rng = random.Random(seed)
    prompts = []
    for i in range(n):
        parts = [BASE[(i + j) % len(BASE)] for j in range(1 + rng.randrange(4))]
        prompts.append(" ".join(parts))
    return prompts


def build_random_100m(out: Path, tokenizer_dir: Path) -> Path:
    """A Qwen2-shaped, randomly initialised ~90M-parameter model using the demo tokenizer."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    if (out / "config.json").exists():
        return out
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=768,
        intermediate_size=2048,
        num_hidden_layers=12,
        num_attention_heads=12,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    Qwen2ForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
