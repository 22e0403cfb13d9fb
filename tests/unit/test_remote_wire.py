"""The remote backend's wire mapping: sampling fields, answers, SSE chunks, echoed logprobs."""

from __future__ import annotations

import math

import pytest

from gpt_service.engine.types import SamplingParams
from gpt_service.remote.perplexity import PerplexityUnavailable, score_echo
from gpt_service.remote.wire import RemoteRequest, StreamState, completion_of, request_body


def test_standard_fields_always_and_extras_only_when_set():
    plain = request_body(RemoteRequest(prompt="你好"), "m", SamplingParams(max_tokens=5), False)
    assert plain == {
        "model": "m",
        "prompt": "你好",
        "max_tokens": 5,
        "temperature": 1.0,
        "top_p": 1.0,
    }
    params = SamplingParams(
        max_tokens=5,
        top_k=7,
        repetition_penalty=1.2,
        min_tokens=2,
        ignore_eos=True,
        stop=("。",),
        seed=3,
        logprobs=2,
    )
    chat = request_body(
        RemoteRequest(messages=[{"role": "user", "content": "hi"}]), "m", params, True
    )
    assert chat["messages"] == [{"role": "user", "content": "hi"}] and "prompt" not in chat
    assert (chat["top_k"], chat["repetition_penalty"], chat["repeat_penalty"]) == (7, 1.2, 1.2)
    assert (chat["min_tokens"], chat["ignore_eos"], chat["stop"], chat["seed"]) == (
        2,
        True,
        ["。"],
        3,
    )
    assert (chat["logprobs"], chat["top_logprobs"]) == (True, 2)
    assert chat["stream"] and chat["stream_options"] == {"include_usage": True}
    ids = request_body(RemoteRequest(prompt_ids=[1, 2]), "m", params, False)
    assert ids["prompt"] == [1, 2] and ids["logprobs"] == 2


def test_answers_and_stream_chunks_become_engine_types():
    data = {
        "choices": [{"message": {"content": "喵！"}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 2},
    }
    completion = completion_of(data, 0.5)
    assert (completion.text, completion.finish_reason, completion.prompt_tokens) == (
        "喵！",
        "length",
        4,
    )
    state = StreamState()
    chunks = [
        {"choices": [{"text": "你", "finish_reason": None}]},
        {"choices": [{"text": "好", "finish_reason": "stop"}]},
        {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}},
    ]
    deltas = [d for d in (state.delta(c) for c in chunks) if d is not None]
    assert "".join(d.text for d in deltas) == "你好"
    final = state.final()
    assert (final.finish_reason, final.prompt_tokens, final.completion_tokens) == ("stop", 3, 2)
    assert StreamState().final().finish_reason == "error"  # ended without a finish reason


def test_echoed_prompt_logprobs_score_only_the_expected_text():
    prompt, text = "问：", "问：答案"
    echoed = {
        "choices": [
            {
                "text": text + "。",
                "logprobs": {
                    "tokens": ["问", "：", "答", "案", "。"],
                    "token_logprobs": [None, -1.0, -2.0, -3.0, -0.5],
                    "text_offset": [0, 1, 2, 3, 4],
                },
            }
        ]
    }
    scored = score_echo(echoed, prompt, text)
    assert (scored.nll, scored.num_tokens) == (5.0, 2)
    assert math.isclose(math.exp(scored.nll / scored.num_tokens), math.exp(2.5))
    not_echoed = {
        "choices": [{"text": "。", "logprobs": {"text_offset": [4], "token_logprobs": [-1]}}]
    }
    with pytest.raises(PerplexityUnavailable):
        score_echo(not_echoed, prompt, text)
    with pytest.raises(PerplexityUnavailable):
        score_echo({"choices": [{"text": text}]}, prompt, text)
