"""The Ollama proxy against a second real gpt-service process as its upstream.

The server under test runs in-process (``ollama_base_url`` = the upstream's URL); every
call it proxies crosses real HTTP into the upstream's Ollama-compatible ``/api``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import app_client, make_settings
from tests.server import RunningServer, free_port, start_server
from tests.sse import parse_sse
from tests.tiny_models import save_llama

# The in-process app's pooled upstream connections live in the fixtures' (session) loop.
pytestmark = pytest.mark.asyncio(loop_scope="session")

MODEL = "tiny-llama"
GREEDY = {"temperature": 0, "max_tokens": 6}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data_dir: Path = tmp_path_factory.mktemp("ollama-upstream")
    save_llama(data_dir / "models" / MODEL)
    with start_server(data_dir, "--model", MODEL, "--model-path", f"models/{MODEL}") as server:
        yield server


async def _in_process(data_dir: Path, base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    # No local model: everything these tests generate comes from the upstream.
    settings = make_settings(data_dir, default_model=None, ollama_base_url=base_url)
    async with app_client(settings, timeout=60) as c:
        yield c


@pytest.fixture
async def proxy(upstream: RunningServer, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _in_process(tmp_path / "data", upstream.url):
        yield client


@pytest.fixture
async def proxy_down(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _in_process(tmp_path / "data", f"http://127.0.0.1:{free_port()}"):
        yield client


def direct(upstream: RunningServer, path: str, body: dict) -> dict:
    """The same request answered by the upstream's own native API."""
    r = httpx.post(f"{upstream.url}{path}", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


async def test_models_lists_the_upstream_models(proxy: httpx.AsyncClient, upstream):
    r = await proxy.get("/ollama/models")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["base_url"] == upstream.url and body["total_count"] == len(body["models"])
    model = {m["name"]: m for m in body["models"]}[f"{MODEL}:latest"]
    assert model["size"] > 0 and model["family"] == "llama"
    assert model["parameter_size"] and model["quantization_level"] == "F32"
    assert model["modified_at"] and model["digest"]


@pytest.mark.parametrize(
    "sampling",
    [GREEDY, {"temperature": 0.9, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.3,
              "seed": 5, "max_tokens": 8}],
)  # fmt: skip
async def test_generate_through_the_proxy_equals_the_upstream_itself(
    proxy: httpx.AsyncClient, upstream, sampling: dict
):
    body = {"prompt": "hello world", "model_name": MODEL, **sampling}
    r = await proxy.post("/generate", json={**body, "use_ollama": True})
    assert r.status_code == 200, r.text
    got = r.json()
    expected = direct(upstream, "/generate", body)
    # Same text proves the option mapping (and raw prompts) round-trips exactly.
    assert got["text"] == expected["text"]
    assert got["model_name"] == MODEL and got["finish_reason"] == "length"
    assert got["tokens_generated"] == sampling["max_tokens"]
    assert got["prompt_tokens"] == expected["prompt_tokens"]


async def test_generate_stream_through_the_proxy_emits_the_native_sse_events(
    proxy: httpx.AsyncClient, upstream
):
    body = {"prompt": "hello world", "model_name": MODEL, **GREEDY}
    r = await proxy.post("/generate/stream", json={**body, "use_ollama": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(r.text)
    texts = [data["text"] for name, data in events if name == "message"]
    assert "".join(texts) == direct(upstream, "/generate", body)["text"]
    name, done = events[-1]
    assert name == "done" and done["finish_reason"] == "length"
    assert done["tokens_generated"] == 6 and done["model_name"] == MODEL


async def test_chat_and_batch_through_the_proxy(proxy: httpx.AsyncClient, upstream):
    chat = {"messages": [{"role": "user", "content": "hi"}], "model_name": MODEL, **GREEDY}
    r = await proxy.post("/chat", json={**chat, "use_ollama": True})
    assert r.status_code == 200, r.text
    assert r.json()["message"] == {
        "role": "assistant",
        "content": direct(upstream, "/chat", chat)["text"],
    }

    batch = {"prompts": ["hello", "你好"], "model_name": MODEL, **GREEDY}
    r = await proxy.post("/batch", json={**batch, "use_ollama": True})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["total_count"] == 2 and got["total_tokens_generated"] == 12
    expected = direct(upstream, "/batch", batch)["results"]
    assert [x["text"] for x in got["results"]] == [x["text"] for x in expected]


async def test_pull_answers_json_or_streams_sse(proxy: httpx.AsyncClient):
    r = await proxy.post("/ollama/pull", params={"model_name": MODEL})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "success" and r.json()["num_updates"] >= 2

    for kwargs in (
        {"params": {"model_name": MODEL}, "headers": {"Accept": "text/event-stream"}},
        {"params": {"model_name": MODEL, "stream": "true"}},
    ):
        r = await proxy.post("/ollama/pull", **kwargs)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = parse_sse(r.text)
        assert events[0] == ("message", {"status": "pulling manifest"})
        assert any(data.get("percent") == 100.0 for _, data in events)
        assert events[-1][0] == "done" and events[-1][1]["status"] == "success"


async def test_stats_and_metrics_count_the_proxied_calls(proxy: httpx.AsyncClient, upstream):
    r = await proxy.post(
        "/generate", json={"prompt": "hi", "model_name": MODEL, "use_ollama": True, **GREEDY}
    )
    assert r.status_code == 200
    stats = (await proxy.get("/ollama/stats")).json()
    assert stats["reachable"] is True and stats["version"] == "1.0.0"
    assert stats["models_available"] >= 1 and f"{MODEL}:latest" in stats["models_running"]
    assert (stats["requests"], stats["errors"]) == (1, 0)
    assert stats["completion_tokens"] == 6 and stats["prompt_tokens"] == r.json()["prompt_tokens"]
    assert stats["mean_latency_ms"] is not None and stats["mean_latency_ms"] > 0
    assert (await proxy.get("/health")).json()["ollama_proxy"] is True
    metrics = (await proxy.get("/metrics")).text
    assert 'gpt_ollama_proxied{kind="requests"} 1.0' in metrics


async def test_unknown_upstream_model_is_404(proxy: httpx.AsyncClient):
    for path, body in [
        ("/generate", {"prompt": "hi"}),
        ("/chat", {"messages": [{"role": "user", "content": "hi"}]}),
        ("/batch", {"prompts": ["a", "b"]}),
    ]:
        r = await proxy.post(path, json={**body, "model_name": "nope", "use_ollama": True})
        assert r.status_code == 404, (path, r.text)
        assert "nope" in r.json()["detail"]
    r = await proxy.post("/ollama/pull", params={"model_name": "nope"})
    assert r.status_code == 404 and "nope" in r.json()["detail"]
    r = await proxy.post("/ollama/pull", params={"model_name": "nope", "stream": "true"})
    assert r.status_code == 404
    # The stream reaches the upstream before answering, so it gets a real status too.
    r = await proxy.post(
        "/generate/stream", json={"prompt": "hi", "model_name": "nope", "use_ollama": True}
    )
    assert r.status_code == 404 and "nope" in r.json()["detail"]
    stats = (await proxy.get("/ollama/stats")).json()
    assert stats["errors"] == stats["requests"] == 7


async def test_use_ollama_needs_a_model_name(proxy: httpx.AsyncClient):
    r = await proxy.post("/generate", json={"prompt": "hi", "use_ollama": True})
    assert r.status_code == 400 and "model_name" in r.json()["detail"]


async def test_upstream_down_is_503_and_reported(proxy_down: httpx.AsyncClient):
    requests = [
        ("GET", "/ollama/models", None, None),
        ("POST", "/ollama/pull", {"model_name": MODEL}, None),
        ("POST", "/ollama/pull", {"model_name": MODEL, "stream": "true"}, None),
        ("POST", "/generate", None, {"prompt": "hi"}),
        ("POST", "/chat", None, {"messages": [{"role": "user", "content": "hi"}]}),
        ("POST", "/batch", None, {"prompts": ["a"]}),
        ("POST", "/generate/stream", None, {"prompt": "hi"}),
    ]
    for method, path, params, body in requests:
        if body is not None:
            body = {**body, "model_name": MODEL, "use_ollama": True}
        r = await proxy_down.request(method, path, params=params, json=body)
        assert r.status_code == 503, (path, r.text)
        assert "unreachable" in r.json()["detail"]
    stats = await proxy_down.get("/ollama/stats")
    assert stats.status_code == 200
    assert stats.json()["reachable"] is False and stats.json()["version"] is None
    assert (await proxy_down.get("/health")).json()["ollama_proxy"] is False
