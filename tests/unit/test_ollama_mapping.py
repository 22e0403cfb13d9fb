"""Mappings between our API and Ollama's: sampling options both ways, keep_alive, errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gpt_service.api.ollama.schemas import GenerateBody, OllamaOptions, is_zero_keep_alive
from gpt_service.engine.types import SamplingParams
from gpt_service.errors import InvalidRequest, NotFound, Unavailable, UpstreamError
from gpt_service.ollama_upstream.backend import build_request, ollama_options
from gpt_service.ollama_upstream.client import error_for_status, upstream_message
from gpt_service.services.preparation import GenerationJob

CAP = 512


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(max_tokens=7, temperature=0.0),
        SamplingParams(
            max_tokens=30, temperature=0.7, top_p=0.8, top_k=12, repetition_penalty=1.3,
            presence_penalty=0.5, frequency_penalty=0.25, stop=("\n", "END"), seed=9,
            min_tokens=3, ignore_eos=True,
        ),
    ],
)  # fmt: skip
def test_options_round_trip_from_the_proxy_through_the_api(params: SamplingParams):
    """What the proxy sends upstream is read back by our /api as the very same sampling."""
    assert OllamaOptions(**ollama_options(params)).sampling(CAP) == params


def test_absent_options_take_ollama_defaults_and_lengths_are_clamped():
    p = OllamaOptions().sampling(CAP)
    assert (p.max_tokens, p.temperature, p.top_p, p.top_k, p.repetition_penalty) == (
        CAP, 0.8, 0.9, 40, 1.1,
    )  # fmt: skip
    assert OllamaOptions(num_predict=-1).sampling(CAP).max_tokens == CAP
    assert OllamaOptions(num_predict=10**9).sampling(CAP).max_tokens == CAP
    odd = OllamaOptions(seed=-1, top_k=-5, stop="###", mirostat=2, num_ctx=4096).sampling(CAP)
    assert (odd.seed, odd.top_k, odd.stop) == (None, 0, ("###",))
    assert OllamaOptions().sampling(CAP, logprobs=3).logprobs == 3


@pytest.mark.parametrize(
    "options",
    [
        {"presence_penalty": float("nan")},
        {"temperature": float("inf")},
        {"temperature": -1},
        {"temperature": 1e-300},
        {"repeat_penalty": 1e-300},
        {"presence_penalty": -1e300},
        {"top_p": 1.5},
        {"seed": 2**64},
        {"top_k": 2**40},
        {"stop": 5},
    ],
)
def test_options_that_could_break_the_engine_are_rejected(options: dict):
    with pytest.raises(ValidationError):
        OllamaOptions(**options)


@pytest.mark.parametrize("value", [0, 0.0, "0", "0s", "0m", "0h0m0s", "0.0s", " 0 "])
def test_zero_keep_alive_unloads(value: float | str):
    assert is_zero_keep_alive(value) is True


@pytest.mark.parametrize("value", [None, "", 300, -1, "-1", "5m", "1h30m", "10ms", "-1s"])
def test_other_keep_alive_keeps(value: float | str | None):
    assert is_zero_keep_alive(value) is False


@pytest.mark.parametrize("value", ["5x", "soon", "m5", "1h-"])
def test_invalid_keep_alive_is_a_clear_400(value: str):
    with pytest.raises(InvalidRequest, match="keep_alive"):
        is_zero_keep_alive(value)


def test_jobs_become_raw_generate_or_chat_calls():
    params = SamplingParams(max_tokens=5, temperature=0.0)
    path, body = build_request(GenerationJob(params, "llama3.2", prompt="Once"))
    assert path == "/api/generate" and body["raw"] is True and body["prompt"] == "Once"
    assert body["options"]["num_predict"] == 5 and body["model"] == "llama3.2"
    messages = [{"role": "user", "content": "hi"}]
    path, body = build_request(GenerationJob(params, "llama3.2", messages=messages))
    assert path == "/api/chat" and body["messages"] == messages and "raw" not in body
    with pytest.raises(InvalidRequest, match="model_name"):
        build_request(GenerationJob(params, None, prompt="Once"))
    with pytest.raises(InvalidRequest):
        build_request(GenerationJob(params, "llama3.2", prompt_ids=[1, 2]))


def test_upstream_errors_map_to_our_categories():
    assert upstream_message('{"error": "model \\"x\\" not found"}') == 'model "x" not found'
    assert upstream_message('{"detail": "busy"}') == "busy"
    assert upstream_message("<html>bad gateway</html>") == "<html>bad gateway</html>"
    assert isinstance(error_for_status(404, "gone"), NotFound)
    assert isinstance(error_for_status(400, "bad"), InvalidRequest)
    assert isinstance(error_for_status(503, "busy"), Unavailable)
    assert isinstance(error_for_status(500, "boom"), UpstreamError)
    assert "HTTP 500" in error_for_status(500, "boom").message


def test_null_fields_mean_their_defaults_and_name_is_an_alias_of_model():
    body = GenerateBody.model_validate(
        {"name": "demo", "stream": None, "options": None, "raw": None, "prompt": "hi"}
    )
    assert (body.model, body.stream, body.raw) == ("demo", True, False)
    assert body.options.sampling(CAP).temperature == 0.8
    with pytest.raises(ValidationError, match="model is required"):
        GenerateBody.model_validate({"prompt": "hi"})
