"""A real server with the compiled decode step on (the tests' default is off): it answers while
the graph builds in the background, then gives the same greedy text from the compiled graph, and
keeps the graph in inductor's cache under the data directory."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.server import start_server
from tests.tiny_models import save_llama

MODEL = "tiny-llama"


def test_server_answers_while_compiling_then_the_same_tokens_compiled(tmp_path: Path):
    data_dir = tmp_path / "data"
    save_llama(data_dir / "models" / MODEL)
    args = ("--model", MODEL, "--model-path", f"models/{MODEL}")
    env = {"GPT_SERVICE_ENGINE__COMPILE": "true"}
    body = {"prompt": "hello world", "max_tokens": 24, "temperature": 0, "ignore_eos": True}
    with start_server(data_dir, *args, env=env) as server:
        eager = httpx.post(f"{server.url}/generate", json=body, timeout=60).json()
        assert eager["tokens_generated"] == 24
        assert " ready in " not in server.log()  # this answer did not wait for the graph
        deadline = time.monotonic() + 240
        while " ready in " not in server.log():
            assert "serving eagerly" not in server.log()
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.5)
        compiled = httpx.post(f"{server.url}/generate", json=body, timeout=60).json()
        assert compiled["text"] == eager["text"]
    assert any((data_dir / "cache" / "inductor").iterdir())
