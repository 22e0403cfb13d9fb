"""A real third-party engine behind the gateway: llama.cpp's ``llama-server`` on the demo model.

llama-server is built from the llama-cpp-python sdist on PyPI by ``bench/peers/build.sh`` into
a cache outside the clone (``~/.cache/gpt-service-peers``): the first run on a machine builds
it (15-25 minutes on 2 cores), later runs reuse it. The demo model is converted to GGUF once
per model version into the same cache (``bench.peers.to_gguf``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import httpx
import pytest

from bench import peers
from gpt_service.config import DEMO_MODEL_DIR
from tests.server import RunningServer, start_server
from tests.sse import parse_sse

pytestmark = pytest.mark.timeout(3600)  # the first run on a machine builds llama-server
PROMPTS = ["请介绍一下机器学习。", "The capital of France is"]


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    peers.build()  # cached: returns at once after the first run on a machine
    with peers.llama_server(peers.to_gguf(DEMO_MODEL_DIR), parallel=2, threads=1) as url:
        yield url


@pytest.fixture(scope="module")
def gateway(llama_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    served = httpx.get(f"{llama_server}/v1/models", timeout=10).json()["data"][0]["id"]
    remote = {"name": "llama", "base_url": f"{llama_server}/v1", "remote_model": served}
    env = {"GPT_SERVICE_REMOTE__MODELS": json.dumps([remote]), "GPT_SERVICE_DEFAULT_MODEL": ""}
    with start_server(tmp_path_factory.mktemp("gateway"), env=env) as server:
        yield server


def test_greedy_generate_equals_llama_servers_own_answer(llama_server: str, gateway: RunningServer):
    for prompt in PROMPTS:
        body = {"prompt": prompt, "max_tokens": 24, "temperature": 0}
        own = httpx.post(f"{llama_server}/v1/completions", json=body, timeout=60)
        assert own.status_code == 200, own.text
        expected = own.json()["choices"][0]["text"]
        assert expected.strip()
        ours = httpx.post(
            f"{gateway.url}/generate", json={**body, "model_name": "llama"}, timeout=60
        )
        assert ours.status_code == 200, ours.text
        assert ours.json()["text"] == expected
        assert ours.json()["tokens_generated"] == own.json()["usage"]["completion_tokens"]

        stream = httpx.post(
            f"{gateway.url}/generate/stream", json={**body, "model_name": "llama"}, timeout=60
        )
        events = parse_sse(stream.text)
        pieces = [data["text"] for name, data in events if name == "message"]
        assert len(pieces) > 3 and "".join(pieces) == expected
        assert events[-1][0] == "done"


def test_llama_server_model_is_listed_with_its_replica(gateway: RunningServer):
    detail = httpx.get(f"{gateway.url}/models/llama", timeout=30).json()
    assert detail["backend"] == "openai" and detail["replicas"][0]["healthy"]
    assert os.path.basename(detail["replicas"][0]["url"]) == "v1"
