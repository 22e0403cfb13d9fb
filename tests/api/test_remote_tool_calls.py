"""A remote engine's structured ``tool_calls`` (as vLLM answers them: whole, or in
``delta.tool_calls`` pieces when streaming) reach our answers: ``/v1/chat/completions`` through
the official ``openai`` client, streamed or not, and Ollama's ``/api/chat``. The upstream is a
real HTTP server on 127.0.0.1 answering canned OpenAI bodies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests import fake_upstream
from tests.conftest import app_client, make_settings

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
MESSAGES = [{"role": "user", "content": "北京天气怎么样？"}]
ARGS = '{"city": "北京"}'
CALL = {"id": "chatcmpl-tool-1", "type": "function", "function": {"name": "get_weather"}}
USAGE = {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16}


def _chunks() -> list[dict[str, Any]]:
    """vLLM's stream of one call: id and name first, the arguments in pieces, then the end."""
    pieces = [{"index": 0, **CALL, "function": {"name": "get_weather", "arguments": ""}}]
    pieces += [{"index": 0, "function": {"arguments": part}} for part in ('{"city": ', '"北京"}')]
    chunks = [{"choices": [{"index": 0, "delta": {"tool_calls": [p]}}]} for p in pieces]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    return [*chunks, {"choices": [], "usage": USAGE}]


class _Upstream(fake_upstream.Handler):
    bodies: list[dict[str, Any]] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_json({"data": [{"id": "up", "max_model_len": 4096}]})

    def do_POST(self) -> None:  # noqa: N802
        body = self.read_json()
        self.bodies.append(body)
        if body.get("stream"):
            events = [f"data: {json.dumps(c, ensure_ascii=False)}\n\n" for c in _chunks()]
            self.send_body(("".join(events) + "data: [DONE]\n\n").encode(), "text/event-stream")
            return
        message = {"role": "assistant", "content": None, "tool_calls": [
            {**CALL, "function": {"name": "get_weather", "arguments": ARGS}}
        ]}  # fmt: skip
        choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
        self.send_json({"choices": [choice], "usage": USAGE})


@pytest.fixture
def upstream() -> Iterator[str]:
    with fake_upstream.serving(_Upstream) as server:
        yield fake_upstream.url(server, "/v1")


async def test_upstream_tool_calls_reach_every_answer(tmp_path: Path, upstream: str):
    remote = {"name": "big", "base_url": upstream, "remote_model": "up"}
    settings = make_settings(tmp_path / "data", default_model=None, remote={"models": [remote]})
    async with app_client(settings) as client:
        oai = openai.AsyncOpenAI(base_url="http://test/v1", api_key="x", http_client=client)
        answer = await oai.chat.completions.create(model="big", messages=MESSAGES, tools=TOOLS)
        choice = answer.choices[0]
        assert choice.finish_reason == "tool_calls" and not choice.message.content
        (call,) = choice.message.tool_calls or []
        assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {
            "city": "北京"
        }
        assert _Upstream.bodies[-1]["tools"] == TOOLS

        stream = await oai.chat.completions.create(
            model="big", messages=MESSAGES, tools=TOOLS, stream=True
        )
        names, args, finish = [], "", None
        async for chunk in stream:
            for piece in chunk.choices[0].delta.tool_calls or []:
                names += [piece.function.name] if piece.function.name else []
                args += piece.function.arguments or ""
            finish = chunk.choices[0].finish_reason or finish
        assert (names, json.loads(args), finish) == (
            ["get_weather"],
            {"city": "北京"},
            "tool_calls",
        )

        body = {"model": "big", "messages": MESSAGES, "tools": TOOLS, "stream": False}
        r = await client.post("/api/chat", json=body)
        assert r.status_code == 200, r.text
        calls = r.json()["message"]["tool_calls"]
        assert calls == [{"function": {"name": "get_weather", "arguments": {"city": "北京"}}}]
