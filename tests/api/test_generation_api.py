"""Generation endpoints of API.md in-process (demo model, real engine, real SSE encoding)."""

from __future__ import annotations

import httpx
import pytest

from tests.sse import parse_sse

GREEDY = {"temperature": 0, "max_tokens": 40}


async def test_generate_returns_api_md_fields(client: httpx.AsyncClient):
    r = await client.post(
        "/generate", json={"prompt": "你好，请介绍一下人工智能。", "max_tokens": 64}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_name"] == "demo"
    assert isinstance(body["text"], str) and body["text"]
    assert 1 <= body["tokens_generated"] <= 64
    assert body["finish_reason"] in ("stop", "length")
    assert body["prompt_tokens"] > 0


async def test_stream_concatenates_to_the_generate_text_without_broken_characters(
    client: httpx.AsyncClient,
):
    for prompt in ("你好，请介绍一下人工智能。", "写一首诗", "Tell me about Python"):
        body = {"prompt": prompt, **GREEDY}
        full = (await client.post("/generate", json=body)).json()
        r = await client.post("/generate/stream", json=body)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = parse_sse(r.text)
        texts = [data["text"] for name, data in events if name == "message"]
        assert all("\ufffd" not in t for t in texts)
        assert "".join(texts) == full["text"]
        name, done = events[-1]
        assert name == "done"
        assert done["finish_reason"] == full["finish_reason"]
        assert done["tokens_generated"] == full["tokens_generated"]


async def test_chat_uses_the_chat_template_and_answers(client: httpx.AsyncClient):
    messages = [
        {"role": "user", "content": "你好"},
        {"role": "assistant", "content": "你好！有什么可以帮助你的吗？"},
        {"role": "user", "content": "介绍一下Python"},
    ]
    r = await client.post("/chat", json={"messages": messages, **GREEDY})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["message"] == {"role": "assistant", "content": body["text"]}
    raw = (await client.post("/generate", json={"prompt": "介绍一下Python", **GREEDY})).json()
    # The templated prompt is longer than the raw one: role markers and history are in it.
    assert body["prompt_tokens"] > raw["prompt_tokens"]


async def test_batch_returns_one_result_per_prompt_in_order_from_shared_steps(
    client: httpx.AsyncClient,
):
    prompts = ["什么是机器学习？", "什么是深度学习？", "Hello", "你好"]
    r = await client.post("/batch", json={"prompts": prompts, **GREEDY})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total_count"] == 4 and len(body["results"]) == 4
    for prompt, result in zip(prompts, body["results"], strict=True):
        alone = (await client.post("/generate", json={"prompt": prompt, **GREEDY})).json()
        assert result["text"] == alone["text"]
    engine = client.app.state.services.registry.get("demo").engine  # type: ignore[attr-defined]
    assert max(engine.stats.step_batch_sizes) >= 2


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"prompt": "hi", "temperature": 5}, "temperature"),
        ({"prompt": "hi", "top_p": 0}, "top_p"),
        ({"prompt": "hi", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "hi", "max_tokens": 10**6}, "max_tokens"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "hi", "repetition_penalty": -1}, "repetition_penalty"),
        ({"max_tokens": 5}, "prompt"),
        ({"prompt": "你好" * 3000}, "tokens"),
    ],
)
async def test_bad_parameters_are_400_with_a_string_detail(
    client: httpx.AsyncClient, body: dict, fragment: str
):
    r = await client.post("/generate", json=body)
    assert r.status_code == 400
    detail = r.json()["detail"]
    assert isinstance(detail, str) and fragment in detail


async def test_bad_chat_and_batch_bodies_are_400(client: httpx.AsyncClient):
    assert (await client.post("/chat", json={"messages": []})).status_code == 400
    bad_role = {"messages": [{"role": "robot", "content": "hi"}]}
    assert (await client.post("/chat", json=bad_role)).status_code == 400
    assert (await client.post("/batch", json={"prompts": []})).status_code == 400
    assert (await client.post("/batch", json={"prompts": ["ok", " "]})).status_code == 400
    too_many = {"prompts": ["x"] * 65}
    assert (await client.post("/batch", json=too_many)).status_code == 400
    r = await client.post(
        "/generate", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and isinstance(r.json()["detail"], str)


async def test_unknown_model_is_404_and_stop_strings_cut_the_text(client: httpx.AsyncClient):
    r = await client.post("/generate", json={"prompt": "hi", "model_name": "nope"})
    assert r.status_code == 404 and "nope" in r.json()["detail"]
    r = await client.post("/generate/stream", json={"prompt": "hi", "model_name": "nope"})
    assert r.status_code == 404
    full = (await client.post("/generate", json={"prompt": "什么是机器学习？", **GREEDY})).json()
    stop = full["text"][4:6]
    cut = await client.post(
        "/generate", json={"prompt": "什么是机器学习？", "stop": [stop], **GREEDY}
    )
    assert cut.json()["text"] == full["text"][: full["text"].index(stop)]
    assert cut.json()["finish_reason"] == "stop"


async def test_seed_makes_sampling_reproducible(client: httpx.AsyncClient):
    body = {"prompt": "写一首诗", "temperature": 1.0, "top_p": 1.0, "max_tokens": 30, "seed": 42}
    a = (await client.post("/generate", json=body)).json()["text"]
    b = (await client.post("/generate", json=body)).json()["text"]
    assert a == b


async def test_use_ollama_without_an_upstream_is_503(client: httpx.AsyncClient):
    r = await client.post("/generate", json={"prompt": "hi", "use_ollama": True, "model_name": "x"})
    assert r.status_code == 503 and r.json()["detail"]


async def test_prompts_are_tokenized_off_the_event_loop(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
):
    import threading

    tokenizer = client.app.state.services.registry.get("demo").tokenizer  # type: ignore[attr-defined]
    encode, threads = tokenizer.encode, []

    def recording_encode(*args: object, **kwargs: object) -> list[int]:
        threads.append(threading.get_ident())
        return encode(*args, **kwargs)

    monkeypatch.setattr(tokenizer, "encode", recording_encode)
    for body in ({"prompt": "你好"}, {"messages": [{"role": "user", "content": "你好"}]}):
        path = "/generate" if "prompt" in body else "/chat"
        r = await client.post(path, json={**body, "max_tokens": 2})
        assert r.status_code == 200, r.text
    assert len(threads) == 2 and threading.get_ident() not in threads
