"""The /v1 stream encoder on hand-made delta streams, checked against the ``openai`` types."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from openai.types.chat import ChatCompletionChunk

from gpt_service.api.openai.stream import (
    StreamMeta,
    chat_events,
    close_streams,
    completion_events,
)
from gpt_service.engine.types import StreamDelta, TokenLogprob


async def deltas(
    texts: list[str], prompt_tokens: int = 5, error: str | None = None, closed: list | None = None
) -> AsyncIterator[StreamDelta]:
    """Like the engine: one delta per token, then the final delta right after the last one."""
    try:
        for text in texts:
            await asyncio.sleep(0)
            yield StreamDelta(text=text, token_ids=[1], logprobs=[TokenLogprob(text, -0.5)])
        yield StreamDelta(
            finish_reason="error" if error else "length",
            prompt_tokens=prompt_tokens,
            completion_tokens=len(texts),
            error=error,
        )
    finally:
        if closed is not None:
            closed.append(True)


def meta(n: int = 1, usage: bool = True, logprobs: bool = False) -> StreamMeta:
    return StreamMeta("chatcmpl-x", 1, "m", n, include_usage=usage, with_logprobs=logprobs)


async def collect(events: AsyncIterator[dict[str, str]]) -> list[str]:
    return [event["data"] async for event in events]


async def test_chat_chunks_role_first_text_per_choice_and_usage():
    streams = [deltas(["a", "b", "c"]), deltas(["x", "y"])]
    data = await collect(chat_events(streams, meta(n=2)))
    assert data[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate(json.loads(d)) for d in data[:-1]]
    assert [c.choices[0].delta.role for c in chunks[:2]] == ["assistant", "assistant"]
    texts = {0: "", 1: ""}
    for chunk in chunks[2:-1]:
        assert chunk.usage is None and len(chunk.choices) == 1
        texts[chunk.choices[0].index] += chunk.choices[0].delta.content or ""
    assert texts == {0: "abc", 1: "xy"}
    # The end arrives with the last token, so finish_reason rides on the last content chunk.
    ends = [c.choices[0] for c in chunks[2:-1] if c.choices[0].finish_reason]
    assert sorted((e.index, e.delta.content) for e in ends) == [(0, "c"), (1, "y")]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.prompt_tokens == 5  # one prompt, counted once for its two choices
    assert chunks[-1].usage.completion_tokens == 5


async def test_completion_chunks_carry_logprobs_with_running_offsets():
    data = await collect(completion_events([deltas(["ab", "c", "de"])], meta(logprobs=True)))
    # (OpenAI's own stream chunks carry finish_reason null, which its strict type rejects.)
    chunks = [json.loads(d) for d in data[:-1]]
    assert {c["object"] for c in chunks} == {"text_completion"}
    offsets = [
        o for c in chunks if c["choices"] for o in c["choices"][0]["logprobs"]["text_offset"]
    ]
    assert offsets == [0, 2, 3]
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == "abcde"
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"


async def test_an_engine_error_ends_the_stream_with_an_error_object():
    data = await collect(chat_events([deltas(["a"], error="model 'm' was unloaded")], meta()))
    assert data[-1] == "[DONE]"
    error = json.loads(data[-2])["error"]
    assert error["type"] == "server_error" and "unloaded" in error["message"]
    assert not any('"usage":{' in d for d in data)  # no usage after a failure


async def test_leaving_early_closes_every_choice_stream():
    closed: list[bool] = []
    streams = [deltas(["a"] * 50, closed=closed), deltas(["b"] * 50, closed=closed)]
    events = chat_events(streams, meta(n=2))
    await anext(events)
    await anext(events)
    await anext(events)  # some content has flowed
    await events.aclose()
    assert closed == [True, True]


async def test_close_streams_reaches_streams_that_were_never_read():
    closed: list[bool] = []

    async def never_ending() -> AsyncIterator[StreamDelta]:
        try:
            await asyncio.sleep(3600)
            yield StreamDelta()
        finally:
            closed.append(True)

    await close_streams([never_ending(), never_ending()])
    assert closed == [True, True]
