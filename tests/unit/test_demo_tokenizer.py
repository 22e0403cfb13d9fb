"""The bundled demo model's vocabulary: common Chinese characters are single tokens.

GB 2312 level 1 (the 3,755 most common simplified characters) comes from the codec itself:
the two-byte codes 0xB0A1..0xD7F9.
"""

from __future__ import annotations

import string

import pytest
from transformers import AutoTokenizer

from gpt_service.config import DEMO_MODEL_DIR

pytestmark = pytest.mark.skipif(
    not (DEMO_MODEL_DIR / "tokenizer.json").is_file(), reason="the demo model is not built"
)


def gb2312_level1() -> list[str]:
    chars = []
    for hi in range(0xB0, 0xD8):
        for lo in range(0xA1, 0xFF):
            try:
                chars.append(bytes([hi, lo]).decode("gb2312"))
            except UnicodeDecodeError:
                continue
    return chars


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(DEMO_MODEL_DIR)


def test_gb2312_level1_characters_are_single_tokens(tokenizer) -> None:
    chars = gb2312_level1()
    assert len(chars) == 3755
    single = [c for c in chars if len(tokenizer.encode(c, add_special_tokens=False)) == 1]
    assert len(single) / len(chars) >= 0.95, f"{len(single)} of {len(chars)}"


def test_punctuation_digits_and_letters_are_single_tokens(tokenizer) -> None:
    symbols = list("，。、；：？！“”‘’（）《》【】「」…—～") + list(string.printable.strip())
    split = [c for c in symbols if len(tokenizer.encode(c, add_special_tokens=False)) != 1]
    assert not split


def test_chinese_text_round_trips_with_one_token_per_common_character(tokenizer) -> None:
    text = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert len(ids) == len(text)
    assert tokenizer.decode(ids) == text


def test_the_model_copies_random_common_characters_it_knows_from_no_sentence(tokenizer) -> None:
    """What a user's own task (tag these words, wrap these names) builds on: greedy copies of
    random level-1 strings of 1-8 characters (the build's copy warm-up uses other strings)."""
    import random

    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(DEMO_MODEL_DIR).eval()
    rng, chars = random.Random(2026), gb2312_level1()
    strings = ["".join(rng.choices(chars, k=rng.randint(1, 8))) for _ in range(30)]
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": f"请重复：\n{s}"}],
            tokenize=False,
            add_generation_prompt=True,
        )
        for s in strings
    ]
    tokenizer.padding_side = "left"
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=12, do_sample=False)
    answers = tokenizer.batch_decode(
        out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True
    )
    copied = sum(a.strip() == s for a, s in zip(answers, strings, strict=True))
    assert copied >= 24, list(zip(strings, answers, strict=True))
