"""Pure pieces of the /v1 API: error objects, logprob formats, request schemas."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gpt_service.api.openai.chat_schemas import ChatCompletionRequest
from gpt_service.api.openai.errors import openai_error
from gpt_service.api.openai.format import chat_logprobs, completion_logprobs
from gpt_service.api.openai.schemas import CompletionRequest, EmbeddingRequest
from gpt_service.engine.types import TokenLogprob

CHAT = [{"role": "user", "content": "hi"}]


def test_error_objects_by_status():
    bad = openai_error(400, "temperature: Input should be less than or equal to 2")["error"]
    assert bad == {
        "message": "temperature: Input should be less than or equal to 2",
        "type": "invalid_request_error",
        "param": "temperature",
        "code": None,
    }
    missing = openai_error(404, "model 'x' is not loaded")["error"]
    assert missing["type"] == "not_found_error" and missing["code"] == "model_not_found"
    assert missing["param"] is None
    assert openai_error(401, "missing API key")["error"]["type"] == "authentication_error"
    assert openai_error(503, "busy")["error"]["type"] == "server_error"
    assert openai_error(500, "boom")["error"]["type"] == "server_error"


def test_legacy_logprobs_offsets_and_duplicate_strings():
    items = [
        TokenLogprob("ab", -0.1, [("ab", -0.1), ("\ufffd", -2.0), ("\ufffd", -3.0)]),
        TokenLogprob("c", -0.2, [("c", -0.2)]),
    ]
    out = completion_logprobs(items, offset=4)
    assert out.tokens == ["ab", "c"] and out.token_logprobs == [-0.1, -0.2]
    assert out.text_offset == [4, 6]
    assert out.top_logprobs[0] == {"ab": -0.1, "\ufffd": -2.0}  # the higher of two "\ufffd"


def test_chat_logprobs_carry_utf8_bytes():
    out = chat_logprobs([TokenLogprob("你", -0.3, [("你", -0.3), ("a", -1.0)])])
    item = out.content[0]
    assert item.bytes == list("你".encode()) and item.logprob == -0.3
    assert [t.token for t in item.top_logprobs] == ["你", "a"]


def test_sampling_params_per_choice():
    request = ChatCompletionRequest(messages=CHAT, seed=7, temperature=1e-9, stop="x")
    first, second = request.sampling(10, None, 0), request.sampling(10, None, 1)
    assert (first.seed, second.seed) == (7, 8)
    assert first.temperature == 0.0  # a vanishing temperature is greedy, not a division by ~0
    assert first.stop == ("x",)
    extras = ChatCompletionRequest(messages=CHAT, top_k=-1, ignore_eos=True, min_tokens=2)
    params = extras.sampling(5, 3)
    assert params.top_k == 0 and params.ignore_eos and params.min_tokens == 2
    assert params.logprobs == 3


@pytest.mark.parametrize(
    ("cls", "body", "param"),
    [
        (ChatCompletionRequest, {"messages": CHAT, "tools": [{"type": "function"}]}, "tools.0.function"),
        (ChatCompletionRequest, {"messages": CHAT, "functions": [{"name": "f"}]}, "functions"),
        (ChatCompletionRequest, {"messages": CHAT, "response_format": {"type": "xml"}}, "response_format.type"),
        (ChatCompletionRequest, {"messages": CHAT, "response_format": {"type": "json_schema"}}, "response_format"),
        (ChatCompletionRequest, {"messages": CHAT, "top_logprobs": 2}, "top_logprobs"),
        (ChatCompletionRequest, {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages.0.content"),
        (CompletionRequest, {"prompt": "x", "echo": True}, "echo"),
        (CompletionRequest, {"prompt": "x", "suffix": "y"}, "suffix"),
        (CompletionRequest, {"prompt": "x", "n": 1, "best_of": 3}, "best_of"),
        (CompletionRequest, {"prompt": "x", "logit_bias": {"1": 5}}, "logit_bias"),
        (EmbeddingRequest, {"input": [[1, 2]]}, "input"),
    ],
)  # fmt: skip
def test_unsupported_fields_are_refused_by_name(cls, body, param):
    with pytest.raises(ValidationError) as error:
        cls.model_validate(body)
    locations = [".".join(str(p) for p in e["loc"]) for e in error.value.errors()]
    assert param in locations


def test_harmless_unknown_fields_are_ignored_and_prompts_normalised():
    request = CompletionRequest.model_validate({"prompt": [1, 2], "user": "u", "store": True})
    assert request.prompts() == [[1, 2]]
    assert CompletionRequest(prompt=["a", "b"]).prompts() == ["a", "b"]
    chat = ChatCompletionRequest.model_validate(
        {"messages": [{"role": "developer", "content": [{"type": "text", "text": "be brief"}]}]}
    )
    assert chat.engine_messages() == [{"role": "system", "content": "be brief"}]
