"""The OpenAI-compatible API (/v1) through the official ``openai`` package on a real server.

The server serves a small random Llama ("tiny") built here, plus a random LoRA adapter
(``init_lora_weights=False``, so it really changes the outputs) added over HTTP. Random
weights make the text meaningless but the behaviour exact: greedy runs are reproducible.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from tests.server import RunningServer, start_server
from tests.tiny_models import save_llama

CHAT = [{"role": "user", "content": "介绍一下Python"}]
LONG = {"ignore_eos": True}  # vLLM-style extra: always generate max_tokens tokens


def save_random_lora(model_dir: Path, adapter_dir: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    config = LoraConfig(
        r=8, lora_alpha=64, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False
    )
    get_peft_model(model, config).save_pretrained(adapter_dir)


def local_greedy_tokens(model_dir: Path, adapter_dir: Path, prompt: str, num: int) -> list[str]:
    """The reference: transformers + PEFT in this process, greedy, EOS blocked like ignore_eos."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model = PeftModel.from_pretrained(model, adapter_dir).eval()
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    out = model.generate(
        ids, max_new_tokens=num, min_new_tokens=num, do_sample=False, pad_token_id=0
    )
    return [tokenizer.decode([i]) for i in out[0, ids.shape[1] :].tolist()]


@pytest.fixture(scope="module")
def oai_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data_dir = tmp_path_factory.mktemp("openai-data")
    save_llama(data_dir / "models" / "tiny")
    save_random_lora(data_dir / "models" / "tiny", data_dir / "models" / "tiny-lora")
    with start_server(data_dir, "--model", "tiny", "--model-path", "models/tiny") as server:
        yield server


@pytest.fixture(scope="module")
def client(oai_server: RunningServer) -> OpenAI:
    # No retries: a 5xx must show up as a failure, not be retried away.
    return OpenAI(base_url=f"{oai_server.url}/v1", api_key="x", max_retries=0, timeout=120)


def test_models_list(client: OpenAI):
    models = client.models.list().data
    assert "tiny" in [m.id for m in models]
    card = client.models.retrieve("tiny")
    assert card.object == "model" and card.owned_by == "gpt-service" and card.created > 0


def test_completion_greedy_usage_and_stop(client: OpenAI):
    full = client.completions.create(
        model="tiny", prompt="hello world", max_tokens=16, temperature=0, extra_body=LONG
    )
    text = full.choices[0].text
    assert full.id.startswith("cmpl-") and full.object == "text_completion"
    assert full.choices[0].finish_reason == "length"
    assert full.usage.completion_tokens == 16
    assert full.usage.total_tokens == full.usage.prompt_tokens + 16
    # Stop at the first ASCII letter or digit after the start: the text is cut right before it.
    stop = next(c for c in text if c.isascii() and c.isalnum() and text.index(c) > 0)
    index = text.index(stop)
    cut = client.completions.create(
        model="tiny",
        prompt="hello world",
        max_tokens=16,
        temperature=0,
        stop=[stop],
        extra_body=LONG,
    )
    assert cut.choices[0].text == text[:index]
    assert cut.choices[0].finish_reason == "stop"


def test_seed_reproducibility_and_n(client: OpenAI):
    def sample(seed: int, n: int = 1) -> list[str]:
        response = client.completions.create(
            model="tiny",
            prompt="hello",
            max_tokens=8,
            temperature=1.0,
            seed=seed,
            n=n,
            extra_body=LONG,
        )
        return [c.text for c in sorted(response.choices, key=lambda c: c.index)]

    first = sample(123)
    assert sample(123) == first
    assert sample(124) != first
    # Choice i of n uses seed+i, so both choices are reproducible and differ.
    pair = sample(123, n=2)
    assert pair == [first[0], sample(124)[0]]


def test_completion_logprobs(client: OpenAI):
    response = client.completions.create(
        model="tiny", prompt="hello", max_tokens=5, temperature=0, logprobs=3, extra_body=LONG
    )
    logprobs = response.choices[0].logprobs
    assert logprobs is not None and len(logprobs.tokens) == 5
    assert len(logprobs.token_logprobs) == len(logprobs.top_logprobs) == 5
    assert logprobs.text_offset[0] == 0 and logprobs.text_offset == sorted(logprobs.text_offset)
    for chosen, top in zip(logprobs.token_logprobs, logprobs.top_logprobs, strict=True):
        assert chosen <= 0 and 1 <= len(top) <= 3
        assert chosen == pytest.approx(max(top.values()), abs=1e-5)  # greedy takes the top token


def test_completion_stream_matches_non_stream(client: OpenAI):
    kwargs = dict(model="tiny", prompt="hello", max_tokens=6, temperature=1.0, seed=5, n=2)
    whole = client.completions.create(**kwargs, extra_body=LONG)
    texts = ["", ""]
    reasons: list[str | None] = [None, None]
    for chunk in client.completions.create(**kwargs, stream=True, extra_body=LONG):
        for choice in chunk.choices:
            texts[choice.index] += choice.text
            reasons[choice.index] = choice.finish_reason or reasons[choice.index]
    assert texts == [c.text for c in sorted(whole.choices, key=lambda c: c.index)]
    assert reasons == ["length", "length"]


def test_chat_stream_equals_non_stream(client: OpenAI):
    whole = client.chat.completions.create(
        model="tiny", messages=CHAT, max_tokens=10, temperature=0
    )
    assert whole.id.startswith("chatcmpl-") and whole.object == "chat.completion"
    assert whole.choices[0].message.role == "assistant"
    chunks = list(
        client.chat.completions.create(
            model="tiny",
            messages=CHAT,
            max_tokens=10,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert {c.id for c in chunks} == {chunks[0].id} and chunks[0].object == "chat.completion.chunk"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == whole.choices[0].message.content
    reasons = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert reasons == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    assert all(c.usage is None for c in chunks[:-1])


def test_chat_max_completion_tokens_and_logprobs(client: OpenAI):
    response = client.chat.completions.create(
        model="tiny",
        messages=CHAT,
        max_completion_tokens=4,
        temperature=0,
        logprobs=True,
        top_logprobs=2,
        extra_body=LONG,
    )
    choice = response.choices[0]
    assert choice.finish_reason == "length" and response.usage.completion_tokens == 4
    content = choice.logprobs.content
    assert len(content) == 4
    for item in content:
        assert len(item.top_logprobs) == 2
        assert item.logprob == pytest.approx(item.top_logprobs[0].logprob, abs=1e-5)
        assert item.bytes == list(item.token.encode("utf-8"))


def test_unknown_model_is_not_found(client: OpenAI):
    with pytest.raises(openai.NotFoundError) as error:
        client.chat.completions.create(model="no-such-model", messages=CHAT, max_tokens=2)
    assert error.value.code == "model_not_found" and error.value.type == "not_found_error"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_bad_parameters_are_bad_requests(client: OpenAI):
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model="tiny", messages=CHAT, temperature=5)
    assert error.value.param == "temperature" and error.value.type == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(
            model="tiny", messages=CHAT, functions=[{"name": "f", "parameters": {}}]
        )
    assert error.value.param == "functions" and "not supported" in error.value.message
    with pytest.raises(openai.BadRequestError) as error:
        client.completions.create(model="tiny", prompt="x", echo=True)
    assert error.value.param == "echo"


def test_embeddings_shape_determinism_and_formats(client: OpenAI):
    texts = ["hello world, this is a tiny test", "你好"]
    first = client.embeddings.create(model="tiny", input=texts, encoding_format="float")
    assert [d.index for d in first.data] == [0, 1] and first.usage.prompt_tokens > 0
    vectors = np.array([d.embedding for d in first.data])
    assert vectors.shape == (2, 32)  # the tiny Llama's hidden size
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # The SDK's default asks for base64 and decodes it itself: same numbers.
    again = client.embeddings.create(model="tiny", input=texts)
    assert np.allclose(np.array([d.embedding for d in again.data]), vectors, atol=1e-6)
    # A text's vector does not depend on the others in its batch (padding is masked out).
    alone = client.embeddings.create(model="tiny", input=texts[1], encoding_format="float")
    assert np.allclose(alone.data[0].embedding, vectors[1], atol=1e-5)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="tiny", input=[[1, 2, 3]])


async def test_per_request_adapter_in_the_same_batch(oai_server: RunningServer, client: OpenAI):
    async_client = AsyncOpenAI(
        base_url=f"{oai_server.url}/v1", api_key="x", max_retries=0, timeout=120
    )

    async def greedy(model: str, logprobs: int | None = None) -> tuple[str, str]:
        response = await async_client.completions.create(
            model=model,
            prompt="hello world",
            max_tokens=12,
            temperature=0,
            logprobs=logprobs,
            extra_body=LONG,
        )
        return response.choices[0].text, response.model

    base_before, _ = await greedy("tiny")
    added = httpx.post(
        f"{oai_server.url}/models/tiny/adapters",
        json={"adapter_path": "models/tiny-lora", "adapter_name": "ft"},
        timeout=60,
    )
    assert added.status_code == 200, added.text
    assert "ft" in added.json()["model"]["adapters"]
    card = client.models.retrieve("tiny:ft")
    assert card.parent == "tiny"  # type: ignore[attr-defined]
    # Base and adapter requests at once: each must get its own weights inside the shared batch.
    results = await asyncio.gather(*[greedy(m) for m in ("tiny", "tiny:ft") * 3])
    base_texts = {text for text, model in results if model == "tiny"}
    lora_texts = {text for text, model in results if model == "tiny:ft"}
    assert base_texts == {base_before}
    assert len(lora_texts) == 1 and lora_texts != base_texts
    lora_alone, _ = await greedy("tiny:ft")
    assert lora_texts == {lora_alone}
    # And the adapter's weights are the saved ones: same tokens as transformers + PEFT here.
    response = await async_client.completions.create(
        model="tiny:ft",
        prompt="hello world",
        max_tokens=12,
        temperature=0,
        logprobs=0,
        extra_body=LONG,
    )
    data = oai_server.data_dir / "models"
    expected = local_greedy_tokens(data / "tiny", data / "tiny-lora", "hello world", 12)
    assert response.choices[0].logprobs.tokens == expected
    with pytest.raises(openai.NotFoundError):
        await async_client.completions.create(model="tiny:nope", prompt="x", max_tokens=2)
    await async_client.close()
