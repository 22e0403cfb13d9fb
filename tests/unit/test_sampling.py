"""The sampler's greedy shortcut (engine/sampling.py): the same tokens as the full path."""

import pytest
import torch

from gpt_service.engine.sampling import Sampler, sample
from gpt_service.engine.sequence import Sequence
from gpt_service.engine.types import SamplingParams

EOS = [3, 7]


def _seq(output_tokens: int = 0, **params: object) -> Sequence:
    seq = Sequence([1, 2], SamplingParams(temperature=0.0, **params), emit=lambda d: None)
    seq.output_ids = [5] * output_tokens
    return seq


def _logits(rows: int, top: list[int], tie: int | None = None) -> torch.Tensor:
    """Random logits with row ``r``'s maximum at ``top[r]`` (and the same value at ``tie``)."""
    torch.manual_seed(0)
    logits = torch.randn(rows, 32)
    for row, token in enumerate(top):
        logits[row, token] = 10.0
        if tie is not None:
            logits[row, tie] = 10.0
    return logits


@pytest.mark.parametrize("tie", [None, 12, 1])
def test_greedy_rows_get_the_full_paths_tokens_with_eos_blocked_or_not(tie: int | None) -> None:
    seqs = [
        _seq(ignore_eos=True),  # EOS blocked: the next best token
        _seq(output_tokens=1, min_tokens=3),  # blocked until 3 tokens
        _seq(output_tokens=3, min_tokens=3),  # no longer blocked: EOS
        _seq(),  # EOS allowed
        _seq(ignore_eos=True),  # blocked, but its argmax is no EOS anyway
    ]
    logits = _logits(len(seqs), [3, 7, 7, 3, 20], tie)
    expected = sample(logits.clone(), seqs, EOS, {}).tolist()
    out = Sampler(EOS, torch.device("cpu"))(logits.clone(), seqs)
    assert out.token_ids == expected and out.logprobs is None
    assert expected[0] not in EOS and expected[1] not in EOS
    if tie is None:
        assert expected[2:] == [7, 3, 20]
    else:  # the first maximum wins, blocked or not
        assert expected[2:] == [min(7, tie), min(3, tie), min(20, tie)]


def test_a_row_with_a_penalty_or_logprobs_takes_the_full_path() -> None:
    seqs = [_seq(ignore_eos=True), _seq(output_tokens=1, repetition_penalty=100.0)]  # 5 seen
    logits = _logits(2, [3, 5])
    out = Sampler(EOS, torch.device("cpu"))(logits.clone(), seqs)
    assert out.token_ids == sample(logits.clone(), seqs, EOS, {}).tolist()
    assert out.token_ids[1] != 5
    seqs = [_seq(), _seq(logprobs=2)]
    out = Sampler(EOS, torch.device("cpu"))(_logits(2, [3, 9]), seqs)
    assert out.token_ids == [3, 9]
    assert out.logprobs is not None and out.logprobs[0] is None and out.logprobs[1] is not None
