"""One prepared request for the three dialects: Ollama's raw/system/context rendering, the
answered name and the token-id checks, on real tokenizers (the demo's, and one without a chat
template)."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from gpt_service.config import DEMO_MODEL_DIR
from gpt_service.engine.loaded import LoadedModel
from gpt_service.engine.types import SamplingParams
from gpt_service.errors import InvalidRequest
from gpt_service.remote.model import RemoteModel, RemoteSpec
from gpt_service.services.preparation import (
    GenerationJob,
    check_inputs,
    render,
    served_name,
)
from tests.tiny_models import build_tokenizer

PARAMS = SamplingParams(max_tokens=4)


def _local(tokenizer: object, name: str = "demo") -> LoadedModel:
    """Only what preparation reads: the tokenizer (no engine, no weights)."""
    return LoadedModel(name, "", engine=None, model=None, tokenizer=tokenizer, info=None)  # type: ignore[arg-type]


def _remote() -> RemoteModel:
    spec = RemoteSpec("big", ["http://127.0.0.1:9/v1"], "upstream-model")
    return RemoteModel(spec, pool=None, info=None)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def demo() -> LoadedModel:
    return _local(AutoTokenizer.from_pretrained(DEMO_MODEL_DIR))


def test_ollama_generate_renders_system_and_prompt_with_the_chat_template(demo: LoadedModel):
    job = GenerationJob(PARAMS, prompt="你好", system="简短回答", templated=True, context_ids=[5, 6])
    chat = [{"role": "system", "content": "简短回答"}, {"role": "user", "content": "你好"}]
    assert render(job, demo) == [5, 6, *demo.encode_chat(chat)]
    raw = GenerationJob(PARAMS, prompt="你好", system="ignored when raw", context_ids=[5])
    assert render(raw, demo) == [5, *demo.encode("你好")]


def test_a_model_without_chat_template_gets_system_then_prompt_as_text():
    plain = _local(build_tokenizer(), "plain")
    assert not getattr(plain.tokenizer, "chat_template", None)
    job = GenerationJob(PARAMS, prompt="hello", system="be brief", templated=True)
    assert render(job, plain) == plain.encode("be brief\n\nhello")
    assert render(GenerationJob(PARAMS, prompt="hello", templated=True), plain) == plain.encode(
        "hello"
    )


def test_a_remote_model_gets_text_or_messages_and_no_context():
    remote = _remote()
    job = GenerationJob(PARAMS, prompt="hi", system="be brief", templated=True)
    request = render(job, remote)
    assert request.prompt is None and request.messages == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
    assert render(GenerationJob(PARAMS, prompt="hi", system="x"), remote).prompt == "hi"
    with pytest.raises(InvalidRequest, match="context"):
        check_inputs(GenerationJob(PARAMS, prompt="hi", context_ids=[1]), remote)


def test_client_token_ids_are_checked_against_the_vocabulary(demo: LoadedModel):
    size = len(demo.tokenizer)
    check_inputs(GenerationJob(PARAMS, prompt_ids=[0, size - 1]), demo)
    for job in (
        GenerationJob(PARAMS, prompt_ids=[1, size]),
        GenerationJob(PARAMS, prompt="hi", templated=True, context_ids=[-1]),
    ):
        with pytest.raises(InvalidRequest, match="outside the vocabulary"):
            check_inputs(job, demo)
    with pytest.raises(InvalidRequest, match="empty"):
        check_inputs(GenerationJob(PARAMS, prompt="  "), demo)


def test_a_blank_ollama_prompt_is_still_a_chat_turn(demo: LoadedModel):
    """/api/generate {"prompt": " "} (not raw) renders a user turn, as Ollama does: no 400."""
    job = GenerationJob(PARAMS, prompt=" ", templated=True)
    check_inputs(job, demo)
    check_inputs(job, _remote())
    assert render(job, demo) == demo.encode_chat([{"role": "user", "content": " "}])


def test_the_answered_name_shows_only_a_non_default_adapter(demo: LoadedModel):
    assert served_name(demo, None) == "demo"
    assert served_name(demo, "my-lora") == "demo:my-lora"
    demo.default_adapter = "loaded-with"
    try:
        assert served_name(demo, "loaded-with") == "demo"
    finally:
        demo.default_adapter = None
