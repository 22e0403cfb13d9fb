"""Unit tests for gpt_service.evaluation.perplexity with a tiny random Llama model."""

from __future__ import annotations

import math

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from gpt_service.evaluation.perplexity import PerplexityResult, perplexity, sequence_nll

CORPUS = [
    "the cat sat on the mat",
    "the quick brown fox jumps over the lazy dog",
    "hello world, this is a tiny test corpus",
    "今天天气很好，我们去公园散步。",
    "机器翻译的质量很难衡量。",
]
PAIRS = [
    ("the cat", " sat on the mat"),
    ("Question: what jumps? Answer:", " the quick brown fox"),
    ("", "hello world"),
    ("今天天气", "很好，我们去公园散步。"),
    ("hello", " world, this is a tiny test corpus and a longer target"),
]
RTOL = 1e-4


def _build_tokenizer(add_bos_token: bool) -> PreTrainedTokenizerFast:
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<pad>", "<s>", "</s>"],
        show_progress=False,
    )
    backend.train_from_iterator(CORPUS * 3, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        add_bos_token=add_bos_token,
    )


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return _build_tokenizer(add_bos_token=False)


@pytest.fixture(scope="module")
def bos_tokenizer() -> PreTrainedTokenizerFast:
    return _build_tokenizer(add_bos_token=True)


@pytest.fixture(scope="module")
def model(tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        initializer_range=0.3,  # peaky distributions so masking mistakes are visible
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return LlamaForCausalLM(config).eval()


def _direct_nll(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    prompt: str,
    target: str,
    max_length: int | None = None,
) -> tuple[float, int]:
    """Reference computation: HF loss with prompt labels masked, times scored-token count."""
    prefix = [tokenizer.bos_token_id] if tokenizer.add_bos_token else []
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
    target_ids = tokenizer(target, add_special_tokens=False)["input_ids"]
    ids = prompt_ids + target_ids
    labels = [-100] * len(prompt_ids) + target_ids
    if max_length is not None:
        keep = max_length - len(prefix)
        ids, labels = ids[-keep:], labels[-keep:]
    ids, labels = prefix + ids, [-100] * len(prefix) + labels
    n_tokens = sum(1 for label in labels[1:] if label != -100)
    with torch.no_grad():
        loss = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss
    return float(loss) * n_tokens, n_tokens


def _direct_corpus(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    pairs: list[tuple[str, str]],
    max_length: int | None = None,
) -> tuple[float, list[float], int]:
    results = [_direct_nll(model, tokenizer, p, t, max_length) for p, t in pairs]
    total_nll = sum(nll for nll, _ in results)
    total_tokens = sum(n for _, n in results)
    per_sample = [math.exp(nll / n) for nll, n in results]
    return math.exp(total_nll / total_tokens), per_sample, total_tokens


@pytest.mark.parametrize("batch_size", [1, 2, 8])
def test_perplexity_matches_direct_computation(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, batch_size: int
) -> None:
    expected_ppl, expected_per_sample, expected_tokens = _direct_corpus(model, tokenizer, PAIRS)
    result = perplexity(model, tokenizer, PAIRS, batch_size=batch_size)
    assert isinstance(result, PerplexityResult)
    assert result.num_tokens == expected_tokens
    assert result.perplexity == pytest.approx(expected_ppl, rel=RTOL)
    assert result.per_sample == pytest.approx(expected_per_sample, rel=RTOL)
    assert result.mean_nll == pytest.approx(math.log(expected_ppl), rel=RTOL)
    assert len(set(round(p, 3) for p in result.per_sample)) == len(PAIRS)


def test_prompt_tokens_are_not_scored(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast
) -> None:
    prompt, target = PAIRS[1]
    n_target = len(tokenizer(target, add_special_tokens=False)["input_ids"])
    nll, count = sequence_nll(model, tokenizer, prompt, target)
    assert count == n_target
    unmasked, unmasked_count = sequence_nll(model, tokenizer, "", prompt + target)
    assert unmasked_count > count
    assert nll != pytest.approx(unmasked, rel=RTOL)


def test_sequence_nll_matches_direct(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast
) -> None:
    for prompt, target in PAIRS:
        nll, count = sequence_nll(model, tokenizer, prompt, target)
        expected_nll, expected_count = _direct_nll(model, tokenizer, prompt, target)
        assert count == expected_count
        assert nll == pytest.approx(expected_nll, rel=RTOL)


def test_empty_prompt_without_bos_skips_first_token(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast
) -> None:
    n_target = len(tokenizer("hello world", add_special_tokens=False)["input_ids"])
    _, count = sequence_nll(model, tokenizer, "", "hello world")
    assert count == n_target - 1


def test_bos_tokenizer_prepends_bos(
    model: LlamaForCausalLM, bos_tokenizer: PreTrainedTokenizerFast
) -> None:
    n_target = len(bos_tokenizer("hello world", add_special_tokens=False)["input_ids"])
    _, count = sequence_nll(model, bos_tokenizer, "", "hello world")
    assert count == n_target  # BOS gives the first target token a context
    expected_ppl, expected_per_sample, _ = _direct_corpus(model, bos_tokenizer, PAIRS)
    result = perplexity(model, bos_tokenizer, PAIRS, batch_size=3)
    assert result.perplexity == pytest.approx(expected_ppl, rel=RTOL)
    assert result.per_sample == pytest.approx(expected_per_sample, rel=RTOL)


@pytest.mark.parametrize("max_length", [6, 10])
def test_left_truncation_keeps_target(
    model: LlamaForCausalLM, bos_tokenizer: PreTrainedTokenizerFast, max_length: int
) -> None:
    pairs = [("the quick brown fox jumps over the lazy dog", " sat on the mat")]
    expected_ppl, _, expected_tokens = _direct_corpus(model, bos_tokenizer, pairs, max_length)
    result = perplexity(model, bos_tokenizer, pairs, max_length=max_length)
    assert result.num_tokens == expected_tokens
    assert result.perplexity == pytest.approx(expected_ppl, rel=RTOL)


def test_default_max_length_is_model_context(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast
) -> None:
    long_prompt = " ".join(CORPUS[:3]) * 4
    assert len(tokenizer(long_prompt, add_special_tokens=False)["input_ids"]) > 64
    pairs = [(long_prompt, " the cat sat on the mat")]
    expected_ppl, _, _ = _direct_corpus(model, tokenizer, pairs, max_length=64)
    result = perplexity(model, tokenizer, pairs)
    assert result.perplexity == pytest.approx(expected_ppl, rel=RTOL)


def test_train_mode_model_is_evaluated_without_dropout(tokenizer: PreTrainedTokenizerFast) -> None:
    torch.manual_seed(1)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
        attention_dropout=0.5,
    )
    dropout_model = LlamaForCausalLM(config).train()
    first = perplexity(dropout_model, tokenizer, PAIRS)
    second = perplexity(dropout_model, tokenizer, PAIRS)
    assert dropout_model.training
    assert first.perplexity == second.perplexity
    expected_ppl, _, _ = _direct_corpus(dropout_model.eval(), tokenizer, PAIRS)
    assert first.perplexity == pytest.approx(expected_ppl, rel=RTOL)


def test_empty_target_gives_nan_sample(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast
) -> None:
    result = perplexity(model, tokenizer, [("the cat", ""), *PAIRS[:2]])
    assert math.isnan(result.per_sample[0])
    assert result.per_sample[1:] == pytest.approx(
        perplexity(model, tokenizer, PAIRS[:2]).per_sample
    )


def test_invalid_input_raises(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast) -> None:
    with pytest.raises(ValueError):
        perplexity(model, tokenizer, [])
    with pytest.raises(ValueError):
        perplexity(model, tokenizer, [("prompt", "")])
    with pytest.raises(ValueError):
        perplexity(model, tokenizer, PAIRS, batch_size=0)
