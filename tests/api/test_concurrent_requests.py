"""Real HTTP on a socket (the app under uvicorn on 127.0.0.1, the demo model): 16 concurrent
requests over the dialects, streamed or not, are tokenized off the event loop and answer whole
(Chinese included); a client hanging up an SSE or NDJSON stream cancels it and frees its
engine slot."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn

from gpt_service.app import create_app
from tests.conftest import make_settings
from tests.server import free_port

pytestmark = pytest.mark.asyncio(loop_scope="session")  # the loop the server fixture runs in

PROMPT = "你好，请介绍一下北京。"
CHAT = [{"role": "user", "content": PROMPT}]
REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("/v1/completions", {"model": "demo", "prompt": PROMPT, "max_tokens": 4}),
    ("/v1/chat/completions", {"model": "demo", "messages": CHAT, "max_tokens": 4, "stream": True}),
    ("/api/generate", {"model": "demo", "prompt": PROMPT, "options": {"num_predict": 4}}),
    (
        "/api/chat",
        {"model": "demo", "messages": CHAT, "stream": False, "options": {"num_predict": 4}},
    ),
    ("/generate", {"prompt": PROMPT, "max_tokens": 4}),
    ("/chat", {"messages": CHAT, "max_tokens": 4}),
]


class ThreadProbe:
    """Wraps ``tokenizer.encode``: the threads it ran in."""

    def __init__(self, encode: Any) -> None:
        self.encode, self.threads = encode, []  # type: ignore[var-annotated]

    def __call__(self, *args: Any, **kwargs: Any) -> list[int]:
        self.threads.append(threading.get_ident())
        return self.encode(*args, **kwargs)


def _text(path: str, response: httpx.Response) -> str:
    """The generated text of any of the dialects' answers (streams joined)."""
    body = response.text
    if path == "/v1/chat/completions":  # SSE
        events = [line[6:] for line in body.splitlines() if line.startswith("data: ")]
        chunks = [json.loads(e) for e in events if e != "[DONE]"]
        return "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
        )
    if path == "/api/generate":  # NDJSON
        return "".join(json.loads(line).get("response", "") for line in body.splitlines())
    data = response.json()
    if path == "/v1/completions":
        return data["choices"][0]["text"]
    return data["message"]["content"] if path == "/api/chat" else data["text"]


@dataclass
class Live:
    url: str
    model: Any  # the demo's LoadedModel


@pytest.fixture(scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Live]:
    app = create_app(make_settings(tmp_path_factory.mktemp("live")))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not serving.done(), "uvicorn did not start"
            await asyncio.sleep(0.05)
        model = app.state.services.registry.get("demo")
        yield Live(f"http://127.0.0.1:{server.config.port}", model)
    finally:
        server.should_exit = True
        await serving


async def test_sixteen_concurrent_requests_are_tokenized_off_the_loop_and_answer_whole(
    live: Live, monkeypatch: pytest.MonkeyPatch
):
    probe = ThreadProbe(live.model.tokenizer.encode)
    monkeypatch.setattr(live.model.tokenizer, "encode", probe)
    calls = [REQUESTS[i % len(REQUESTS)] for i in range(16)]
    async with httpx.AsyncClient(base_url=live.url, timeout=120) as http:
        answers = await asyncio.gather(*(http.post(p, json=b) for p, b in calls))
    for (path, _), answer in zip(calls, answers, strict=True):
        assert answer.status_code == 200, (path, answer.text)
        assert "\ufffd" not in _text(path, answer), path
    assert len(probe.threads) == 16 and threading.get_ident() not in probe.threads


LONG = {"max_tokens": 4000, "ignore_eos": True}


async def _cancelled(http: httpx.AsyncClient) -> float:
    """Generations the service counted as cancelled (the client left before the end)."""
    text = (await http.get("/metrics")).text
    key = 'gpt_generations_total{finish_reason="cancelled",model="demo"}'
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(key))


@pytest.mark.parametrize(
    ("path", "body", "choices"),
    [
        ("/v1/chat/completions", {"model": "demo", "messages": CHAT, "stream": True, **LONG}, 1),
        ("/v1/completions", {"model": "demo", "prompt": PROMPT, "stream": True, "n": 2, **LONG}, 2),
        (
            "/api/generate",
            {
                "model": "demo",
                "prompt": PROMPT,
                "options": {"num_predict": 4000, "ignore_eos": True},
            },
            1,
        ),
        (
            "/api/chat",
            {
                "model": "demo",
                "messages": CHAT,
                "options": {"num_predict": 4000, "ignore_eos": True},
            },
            1,
        ),
    ],
)
async def test_hanging_up_a_stream_cancels_it_and_frees_the_engine(
    live: Live, path: str, body: dict, choices: int
):
    async with httpx.AsyncClient(base_url=live.url, timeout=60) as http:
        before = await _cancelled(http)
        async with http.stream("POST", path, json=body) as stream:
            assert stream.status_code == 200
            lines = 0
            async for line in stream.aiter_lines():
                lines += bool(line.strip())
                if lines > 4:
                    break  # hang up mid-stream
        for _ in range(100):
            if live.model.num_running == 0 and live.model.num_waiting == 0:
                break
            await asyncio.sleep(0.1)
        assert (live.model.num_running, live.model.num_waiting) == (0, 0)
        assert await _cancelled(http) - before == choices
