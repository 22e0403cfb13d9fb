"""A real ``gpt-service serve`` process: docs, API.md's examples, real SSE, disconnects."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import httpx

from tests.server import RunningServer

API_MD = Path(__file__).resolve().parents[3] / "shared" / "API.md"


def api_md_paths() -> set[str]:
    text = API_MD.read_text(encoding="utf-8")
    return {m.group(1) for m in re.finditer(r"^#### (?:GET|POST) `([^`]+)`", text, re.M)}


def test_docs_and_openapi_list_every_api_md_path(server: RunningServer):
    docs = httpx.get(f"{server.url}/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text.lower()
    spec = httpx.get(f"{server.url}/openapi.json").json()
    expected = api_md_paths()
    assert len(expected) >= 19  # the document's endpoint list was parsed
    missing = {p for p in expected if p not in spec["paths"]}
    assert not missing, f"paths of API.md missing from /openapi.json: {missing}"


def test_api_md_python_example(server: RunningServer):
    response = httpx.post(
        f"{server.url}/generate",
        json={"prompt": "你好，请介绍一下人工智能。", "max_tokens": 512},
        timeout=120,
    )
    assert response.status_code == 200
    assert response.json()["text"]
    lines = []
    with httpx.stream(
        "POST", f"{server.url}/generate/stream", json={"prompt": "写一首诗"}, timeout=120
    ) as stream:
        for line in stream.iter_lines():
            if line:
                lines.append(line)
    data = [json.loads(line[5:]) for line in lines if line.startswith("data:")]
    assert any("text" in d for d in data)
    assert "finish_reason" in data[-1]
    assert all("\ufffd" not in d.get("text", "") for d in data)


def test_api_md_curl_example(server: RunningServer):
    out = subprocess.run(
        [
            "curl", "-s", "-X", "POST", f"{server.url}/generate",
            "-H", "Content-Type: application/json",
            "-d", '{\n    "prompt": "你好，请介绍一下人工智能。",\n    "max_tokens": 512\n  }',
        ],
        capture_output=True, check=True, timeout=120,
    )  # fmt: skip
    body = json.loads(out.stdout)
    assert body["text"] and body["model_name"] == "demo"


def test_client_disconnect_frees_the_engine_slot(server: RunningServer):
    body = {"prompt": "你好", "max_tokens": 1500, "ignore_eos": True, "temperature": 0.8}
    with httpx.stream("POST", f"{server.url}/generate/stream", json=body, timeout=60) as stream:
        for i, _ in enumerate(stream.iter_lines()):
            if i > 6:
                break  # hang up mid-stream
    deadline = time.monotonic() + 10
    running = None
    while time.monotonic() < deadline:
        running = httpx.get(f"{server.url}/models/demo").json()["num_running"]
        if running == 0:
            break
        time.sleep(0.1)
    assert running == 0


def test_concurrent_streams_share_forward_passes(server: RunningServer):
    import concurrent.futures

    def one(prompt: str) -> str:
        body = {"prompt": prompt, "max_tokens": 32, "temperature": 0}
        return httpx.post(f"{server.url}/generate", json=body, timeout=120).json()["text"]

    prompts = ["什么是机器学习？", "什么是深度学习？", "介绍一下Python", "Hello"]
    alone = [one(p) for p in prompts]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        together = list(pool.map(one, prompts))
    assert together == alone


def test_a_too_long_prompt_is_a_clean_400_without_tokenizer_alarms(server: RunningServer):
    r = httpx.post(f"{server.url}/generate", json={"prompt": "你好，世界。" * 2000}, timeout=60)
    assert r.status_code == 400 and "accepts at most" in r.json()["detail"]
    assert "Token indices sequence length is longer" not in server.log()
