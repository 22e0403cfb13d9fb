"""A remote model served by two real gpt-service replicas behind a third (the gateway).

Everything runs as real ``gpt-service serve`` processes on 127.0.0.1: the upstreams serve the
demo model and require their own API key; the gateway has its own key, the demo model
locally, and ``big`` = the upstreams' demo as a remote model with two replicas. Greedy text
through every API of the gateway must equal the upstream's own answer; the tests that kill
replicas come last in the module.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest

from tests.server import RunningServer, free_port, start_server
from tests.sse import parse_sse

UP_KEY, GW_KEY = "upstream-secret", "gateway-secret"
PROMPT = "请介绍一下机器学习。"
MESSAGES = [{"role": "user", "content": "你好，请介绍一下你自己。"}]
GREEDY = {"temperature": 0, "max_tokens": 24}
# Ollama's repeat_penalty defaults to 1.1; off (1.0) it is the same decoding as GREEDY.
OLLAMA_GREEDY = {"temperature": 0, "num_predict": 24, "repeat_penalty": 1.0}
MEMORIZE = [{"prompt": "暗号？", "completion": "天王盖地虎，宝塔镇河妖。"}] * 8


@dataclass
class Cluster:
    a: RunningServer
    b: RunningServer
    gw: RunningServer
    stack: ExitStack
    a_port: int

    def upstream(self, server: RunningServer | None = None) -> httpx.Client:
        url = (server or self.a).url
        return httpx.Client(base_url=url, timeout=60, headers=_auth(UP_KEY))


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _upstream_env(shared: Path) -> dict[str, str]:
    return {
        "GPT_SERVICE_API_KEYS": json.dumps([UP_KEY]),
        "GPT_SERVICE_MODEL_DIRS": json.dumps([str(shared)]),  # storage both machines see
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("remote")
    gw_dir = root / "gw"
    datasets = gw_dir / "datasets"
    datasets.mkdir(parents=True)
    rows = [json.dumps(r, ensure_ascii=False) for r in MEMORIZE]
    (datasets / "secret.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    with ExitStack() as stack:
        a_port = free_port()
        env = _upstream_env(gw_dir)
        a = stack.enter_context(start_server(root / "a", env=env, port=a_port))
        b = stack.enter_context(start_server(root / "b", env=env))
        remote = {
            "name": "big",
            "base_url": [f"{a.url}/v1", f"{b.url}/v1"],
            "remote_model": "demo",
            "api_key": UP_KEY,
            "model_path": "demo",  # local copy of the weights: training jobs use it
        }
        gw_env = {
            "GPT_SERVICE_API_KEYS": json.dumps([GW_KEY]),
            "GPT_SERVICE_REMOTE__MODELS": json.dumps([remote]),
            "GPT_SERVICE_REMOTE__ALLOWED_URLS": f"{a.url}/,http://allowed.invalid/",
            "GPT_SERVICE_REMOTE__PROBE_INTERVAL_SECONDS": "0.5",
            "GPT_SERVICE_TRAINING__NUM_THREADS": "1",
        }
        gw = stack.enter_context(start_server(gw_dir, env=gw_env))
        yield Cluster(a, b, gw, stack, a_port)


@pytest.fixture
def gw(cluster: Cluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cluster.gw.url, timeout=60, headers=_auth(GW_KEY)) as client:
        yield client


def upstream_completion(cluster: Cluster, prompt: str, model: str = "demo") -> str:
    with cluster.upstream() as up:
        body = {"model": model, "prompt": prompt, **GREEDY}
        response = up.post("/v1/completions", json=body)
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["text"]


def upstream_chat(cluster: Cluster) -> str:
    with cluster.upstream() as up:
        body = {"model": "demo", "messages": MESSAGES, **GREEDY}
        response = up.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def test_models_health_and_metrics_describe_the_remote_model(gw: httpx.Client):
    listed = {m["name"]: m for m in ok(gw.get("/models"))["models"]}
    assert listed["big"]["backend"] == "openai" and listed["demo"]["backend"] == "local"
    detail = ok(gw.get("/models/big"))
    assert detail["type"] == "remote" and detail["remote_model"] == "demo"
    assert [r["healthy"] for r in detail["replicas"]] == [True, True]
    health = ok(gw.get("/health"))
    assert health["remote_models"]["big"]["replicas_up"] == 2
    ok(gw.post("/generate", json={"model_name": "big", "prompt": PROMPT, **GREEDY}))
    assert "big" in {m["id"] for m in ok(gw.get("/v1/models"))["data"]}
    assert "big:latest" in {m["name"] for m in ok(gw.get("/api/tags"))["models"]}
    assert "big:latest" in {m["name"] for m in ok(gw.get("/api/ps"))["models"]}
    assert ok(gw.post("/api/show", json={"model": "big"}))["details"]
    metrics = gw.get("/metrics").text
    assert 'gpt_remote_replica_requests_total{model="big"' in metrics
    assert "gpt_remote_replica_latency_seconds_total" in metrics


def test_greedy_text_through_every_api_equals_the_upstreams(cluster: Cluster, gw: httpx.Client):
    text, chat = upstream_completion(cluster, PROMPT), upstream_chat(cluster)
    assert text and chat
    native = {"model_name": "big", **GREEDY}
    assert ok(gw.post("/generate", json={**native, "prompt": PROMPT}))["text"] == text
    batch = ok(gw.post("/batch", json={**native, "prompts": [PROMPT, PROMPT]}))
    assert [r["text"] for r in batch["results"]] == [text, text]
    assert ok(gw.post("/chat", json={**native, "messages": MESSAGES}))["text"] == chat

    client = openai.OpenAI(base_url=f"{cluster.gw.url}/v1", api_key=GW_KEY)
    completion = client.completions.create(model="big", prompt=PROMPT, **GREEDY)
    assert completion.choices[0].text == text
    answer = client.chat.completions.create(model="big", messages=MESSAGES, **GREEDY)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == chat

    schema = {"type": "object", "properties": {"名字": {"type": "string"}}, "required": ["名字"]}
    rf = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}
    with cluster.upstream() as up:
        body = {"model": "demo", "messages": MESSAGES, "response_format": rf, **GREEDY}
        own_json = ok(up.post("/v1/chat/completions", json=body))["choices"][0]["message"]
    structured = client.chat.completions.create(
        model="big",
        messages=MESSAGES,  # type: ignore[arg-type]
        response_format=rf,  # type: ignore[arg-type]
        **GREEDY,
    )
    assert structured.choices[0].message.content == own_json["content"]
    assert structured.choices[0].message.content != chat  # the schema reached the upstream

    vectors = client.embeddings.create(model="big", input=[PROMPT]).data[0].embedding
    with cluster.upstream() as up:
        own = ok(up.post("/v1/embeddings", json={"model": "demo", "input": [PROMPT]}))
    assert vectors == pytest.approx(own["data"][0]["embedding"], abs=1e-5)

    olla = ollama.Client(host=cluster.gw.url, headers=_auth(GW_KEY))
    options = OLLAMA_GREEDY
    assert olla.generate(model="big", prompt=PROMPT, raw=True, options=options).response == text
    assert olla.chat(model="big", messages=MESSAGES, options=options).message.content == chat
    # The local model next to it is untouched (and is the same weights: same text).
    assert (
        ok(gw.post("/generate", json={**native, "model_name": "demo", "prompt": PROMPT}))["text"]
        == text
    )


def test_streams_are_relayed_token_by_token(cluster: Cluster, gw: httpx.Client):
    text, chat = upstream_completion(cluster, PROMPT), upstream_chat(cluster)
    body = {"model_name": "big", "prompt": PROMPT, **GREEDY}
    response = gw.post("/generate/stream", json=body)
    assert response.status_code == 200
    events = parse_sse(response.text)
    pieces = [data["text"] for name, data in events if name == "message"]
    assert len(pieces) > 3 and "".join(pieces) == text
    assert events[-1][0] == "done"

    client = openai.OpenAI(base_url=f"{cluster.gw.url}/v1", api_key=GW_KEY)
    chunks = client.chat.completions.create(
        model="big",
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
        **GREEDY,
    )
    deltas = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert len(deltas) > 3 and "".join(deltas) == chat

    olla = ollama.Client(host=cluster.gw.url, headers=_auth(GW_KEY))
    parts = olla.chat(model="big", messages=MESSAGES, stream=True, options=OLLAMA_GREEDY)
    assert "".join(p.message.content or "" for p in parts) == chat


def cancelled_on_upstreams(cluster: Cluster) -> float:
    total = 0.0
    for server in (cluster.a, cluster.b):
        with cluster.upstream(server) as up:
            for line in up.get("/metrics").text.splitlines():
                if (
                    line.startswith("gpt_generations_total{")
                    and 'finish_reason="cancelled"' in line
                ):
                    total += float(line.rsplit(" ", 1)[1])
    return total


def test_client_disconnect_closes_the_upstream_stream(cluster: Cluster, gw: httpx.Client):
    before = cancelled_on_upstreams(cluster)
    body = {"model_name": "big", "prompt": PROMPT, "max_tokens": 2000, "ignore_eos": True}
    with gw.stream("POST", "/generate/stream", json=body) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        while not next(lines).startswith("data:"):
            pass
    deadline = time.monotonic() + 20
    while cancelled_on_upstreams(cluster) <= before:
        assert time.monotonic() < deadline, "the upstream sequence was not cancelled"
        time.sleep(0.2)


def test_evaluation_runs_with_perplexity_reported_unavailable(gw: httpx.Client):
    samples = [{"input": "你好", "expected": "你好！"}, {"input": "暗号？", "expected": "天王"}]
    body = {"test_data": samples, "metrics": ["exact_match", "perplexity"], "max_tokens": 12}
    results = {}
    for model in ("big", "demo"):
        eval_id = ok(gw.post("/evaluate", json={**body, "model_name": model}))["eval_id"]
        results[model] = wait_eval(gw, eval_id)
    remote, local = results["big"], results["demo"]
    assert remote["status"] == "completed", remote
    assert [s["prediction"] for s in remote["samples"]] == [
        s["prediction"] for s in local["samples"]
    ]
    assert remote["scores"]["exact_match"] is not None
    assert remote["scores"]["perplexity"] is None
    assert "chat template" in remote["details"]["perplexity"]["unavailable"]
    assert local["scores"]["perplexity"] is not None
    raw = {**body, "model_name": "big", "use_chat_template": False}
    raw_result = wait_eval(gw, ok(gw.post("/evaluate", json=raw))["eval_id"])
    # A gpt-service upstream does not echo prompt logprobs: the reason is its own answer.
    assert "echo" in raw_result["details"]["perplexity"]["unavailable"]
    assert raw_result["scores"]["exact_match"] is not None


def wait_eval(gw: httpx.Client, eval_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        result = ok(gw.get(f"/evaluate/results/{eval_id}"))
        if result["status"] in ("completed", "failed"):
            return result
        time.sleep(0.3)
    raise AssertionError(f"evaluation {eval_id} did not finish")


def test_load_over_http_is_checked(cluster: Cluster, gw: httpx.Client):
    def load(name: str, url: str, **extra: Any) -> httpx.Response:
        body = {"model_name": name, "backend": "openai", "base_url": url, **extra}
        return gw.post("/models/load", json={"remote_model": "demo", **body})

    refused = load("evil", "http://127.0.0.1:1/v1")
    assert refused.status_code == 403 and "ALLOWED_URLS" in refused.json()["detail"]
    ghost = load("nope", f"{cluster.a.url}/v1", remote_model="ghost", api_key=UP_KEY)
    assert ghost.status_code == 404 and "ghost" in ghost.json()["detail"]
    wrong_key = load("nokey", f"{cluster.a.url}/v1", api_key="not-the-key")
    assert wrong_key.status_code == 502 and "API key" in wrong_key.json()["detail"]
    down = load("down", "http://allowed.invalid/v1")
    assert down.status_code == 503 and down.headers["retry-after"]
    bad = gw.post("/models/load", json={"model_name": "x", "backend": "openai"})
    assert bad.status_code == 400 and "base_url" in bad.json()["detail"]

    assert load("small", f"{cluster.a.url}/v1", api_key=UP_KEY).status_code == 200
    text = upstream_completion(cluster, PROMPT)
    body = {"model_name": "small", "prompt": PROMPT, **GREEDY}
    assert ok(gw.post("/generate", json=body))["text"] == text
    missing = gw.post("/generate", json={**body, "model_name": "small:nothing"})
    assert missing.status_code == 404
    ok(gw.post("/models/unload", params={"model_name": "small"}))


def test_trained_adapter_is_registered_on_the_upstreams(cluster: Cluster, gw: httpx.Client):
    spec = {
        "base_model": "big",  # remote: trained on its local weights, served upstream
        "dataset_path": "datasets/secret.jsonl",
        "max_steps": 30,
        "learning_rate": 0.01,
        "batch_size": 8,
        "load_on_completion": True,
    }
    task_id = ok(gw.post("/train", json=spec))["task_id"]
    deadline = time.monotonic() + 240
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = ok(gw.get(f"/train/status/{task_id}"))
        if status["status"] in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.5)
    assert status["status"] == "completed", status
    served = status["result"]["served_as"]
    adapter = served.split(":", 1)[1]
    assert served == f"big:{adapter}"
    # The upstream serves it under its lora_name (as vLLM does): its own answer is the truth.
    expected = upstream_completion(cluster, "暗号？", model=adapter)
    assert expected != upstream_completion(cluster, "暗号？")  # the adapter changed the output
    body = {"model_name": served, "prompt": "暗号？", **GREEDY}
    assert ok(gw.post("/generate", json=body))["text"] == expected
    with cluster.upstream(cluster.b) as up:  # registered on every replica
        answer = ok(
            up.post("/v1/completions", json={"model": adapter, "prompt": "暗号？", **GREEDY})
        )
    assert answer["choices"][0]["text"] == expected


def test_failover_then_503_then_probed_back_in(cluster: Cluster, gw: httpx.Client):
    text = upstream_completion(cluster, PROMPT)
    body = {"model_name": "big", "prompt": PROMPT, **GREEDY}
    cluster.a.process.terminate()
    cluster.a.process.wait(timeout=30)
    for _ in range(4):
        assert ok(gw.post("/generate", json=body))["text"] == text
    replicas = ok(gw.get("/models/big"))["replicas"]
    assert [r["healthy"] for r in replicas] == [False, True]

    cluster.b.process.terminate()
    cluster.b.process.wait(timeout=30)
    down = gw.post("/generate", json=body)
    assert down.status_code == 503 and int(down.headers["retry-after"]) > 0
    stream = gw.post("/generate/stream", json=body)
    assert stream.status_code == 503
    v1 = gw.post("/v1/completions", json={"model": "big", "prompt": PROMPT, **GREEDY})
    assert v1.status_code == 503
    local = ok(gw.post("/generate", json={**body, "model_name": "demo"}))
    assert local["text"] == text  # the local model is unaffected

    env = _upstream_env(cluster.gw.data_dir)
    with start_server(cluster.a.data_dir, env=env, port=cluster.a_port):
        deadline = time.monotonic() + 30
        while gw.post("/generate", json=body).status_code != 200:
            assert time.monotonic() < deadline, "replica a was not probed back in"
            time.sleep(0.3)
        assert ok(gw.post("/generate", json=body))["text"] == text
