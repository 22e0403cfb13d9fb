"""Streaming for ``/v1``: the n engine streams of one request, merged into OpenAI SSE chunks.

Each choice is its own engine sequence (so the n choices share forward passes). One task per
choice pumps its deltas into a shared queue; the consumer takes whatever is ready at once and
coalesces it per choice. The engine emits a sequence's last text and its end back to back, so
``finish_reason`` lands in the last content chunk, as the OpenAI reference server does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field

from pydantic import BaseModel

from gpt_service.api.openai.errors import openai_error
from gpt_service.api.openai.format import (
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatDelta,
    CompletionChoice,
    CompletionResponse,
    Usage,
    chat_logprobs,
    completion_logprobs,
    finish_reason,
)
from gpt_service.api.openai.tools import chat_finish, split_events
from gpt_service.engine.types import FinishReason, StreamDelta, TokenLogprob
from gpt_service.services.structured import ToolPlan

Streams = list[AsyncIterator[StreamDelta]]
Event = dict[str, str]
DONE: Event = {"data": "[DONE]"}


@dataclass
class ChoiceUpdate:
    """Everything one choice produced since the last chunk."""

    index: int
    text: str = ""
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None

    def add(self, delta: StreamDelta) -> None:
        self.text += delta.text
        self.logprobs += delta.logprobs
        if delta.is_final:
            self.finish_reason = delta.finish_reason
            self.prompt_tokens = delta.prompt_tokens
            self.completion_tokens = delta.completion_tokens
            self.error = delta.error


async def _pump(index: int, stream: AsyncIterator[StreamDelta], out: asyncio.Queue) -> None:
    try:
        async for delta in stream:
            out.put_nowait((index, delta))
    except Exception as exc:  # a failing stream ends its own choice, never the others
        out.put_nowait((index, StreamDelta(finish_reason="error", error=str(exc))))


async def merge_streams(streams: Streams) -> AsyncIterator[list[ChoiceUpdate]]:
    """Batches of per-choice updates, in arrival order, until every choice has finished."""
    queue: asyncio.Queue[tuple[int, StreamDelta]] = asyncio.Queue()
    tasks = [asyncio.create_task(_pump(i, s, queue)) for i, s in enumerate(streams)]
    remaining = len(streams)
    try:
        while remaining:
            items = [await queue.get()]
            while not queue.empty():
                items.append(queue.get_nowait())
            updates: dict[int, ChoiceUpdate] = {}
            for index, delta in items:
                updates.setdefault(index, ChoiceUpdate(index)).add(delta)
            remaining -= sum(1 for u in updates.values() if u.finish_reason)
            yield list(updates.values())
    finally:
        # Leaving early (client gone, error) cancels the pumps, which cancels the sequences.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def close_streams(streams: Streams) -> None:
    """Cancel sequences whose streams were never read (a later choice failed to submit)."""

    async def drain(stream: AsyncIterator[StreamDelta]) -> None:
        async for _ in stream:
            pass

    tasks = [asyncio.create_task(drain(s)) for s in streams]
    await asyncio.sleep(0)  # let each task enter its stream, so the cancel reaches the engine
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _data(chunk: BaseModel) -> Event:
    return {"data": chunk.model_dump_json()}


@dataclass
class StreamMeta:
    id: str
    created: int
    model: str
    n: int  # choices per prompt: prompt i owns choices i*n .. i*n+n-1
    include_usage: bool
    with_logprobs: bool
    tool_plan: ToolPlan | None = None


async def _events(
    streams: Streams,
    meta: StreamMeta,
    render: Callable[[ChoiceUpdate], BaseModel | None],
    usage_chunk: Callable[[Usage], BaseModel],
) -> AsyncIterator[Event]:
    prompt_tokens: dict[int, int] = {}
    completion_tokens = 0
    async with aclosing(merge_streams(streams)) as merged:
        async for updates in merged:
            for update in updates:
                if update.error:
                    error = openai_error(500, update.error)
                    yield {"data": json.dumps(error, ensure_ascii=False)}
                    yield DONE
                    return
                if update.finish_reason:
                    prompt_tokens[update.index // meta.n] = update.prompt_tokens
                    completion_tokens += update.completion_tokens
                chunk = render(update)
                if chunk is not None:
                    yield _data(chunk)
    if meta.include_usage:
        yield _data(usage_chunk(Usage.of(sum(prompt_tokens.values()), completion_tokens)))
    yield DONE


def chat_events(streams: Streams, meta: StreamMeta) -> AsyncIterator[Event]:
    def chunk(choices: list[ChatChunkChoice], usage: Usage | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=meta.id, created=meta.created, model=meta.model, choices=choices, usage=usage
        )

    plan = meta.tool_plan
    parsers = [plan.parser() if plan else None for _ in streams]
    has_calls = [False] * len(streams)

    def delta(u: ChoiceUpdate) -> ChatDelta:
        parser = parsers[u.index]
        if parser is None:
            return ChatDelta(content=u.text or None)
        events = parser.feed(u.text) + (parser.finish() if u.finish_reason else [])
        content, calls = split_events(events)
        has_calls[u.index] |= bool(calls)
        return ChatDelta(content=content or None, tool_calls=calls or None)

    def render(u: ChoiceUpdate) -> ChatCompletionChunk | None:
        if not (u.text or u.logprobs or u.finish_reason):
            return None
        choice_delta = delta(u)
        reason = None
        if u.finish_reason:
            reason = chat_finish(u.finish_reason, plan, has_calls[u.index])
        elif choice_delta.content is None and not choice_delta.tool_calls and not u.logprobs:
            return None  # text held back by the tool-call parser
        choice = ChatChunkChoice(
            index=u.index,
            delta=choice_delta,
            logprobs=chat_logprobs(u.logprobs) if meta.with_logprobs and u.logprobs else None,
            finish_reason=reason,
        )
        return chunk([choice])

    async def events() -> AsyncIterator[Event]:
        # The first chunk of every choice carries the role, as OpenAI's do.
        for index in range(len(streams)):
            role = ChatDelta(role="assistant", content="")
            yield _data(chunk([ChatChunkChoice(index=index, delta=role)]))
        async with aclosing(_events(streams, meta, render, lambda u: chunk([], u))) as inner:
            async for event in inner:
                yield event

    return events()


def completion_events(streams: Streams, meta: StreamMeta) -> AsyncIterator[Event]:
    offsets = [0] * len(streams)  # text_offset continues across chunks

    def chunk(choices: list[CompletionChoice], usage: Usage | None = None) -> CompletionResponse:
        return CompletionResponse(
            id=meta.id, created=meta.created, model=meta.model, choices=choices, usage=usage
        )

    def render(u: ChoiceUpdate) -> CompletionResponse | None:
        if not (u.text or u.logprobs or u.finish_reason):
            return None
        logprobs = None
        if meta.with_logprobs and u.logprobs:
            logprobs = completion_logprobs(u.logprobs, offsets[u.index])
            offsets[u.index] += sum(len(item.token) for item in u.logprobs)
        choice = CompletionChoice(
            index=u.index,
            text=u.text,
            logprobs=logprobs,
            finish_reason=finish_reason(u.finish_reason),
        )
        return chunk([choice])

    return _events(streams, meta, render, lambda u: chunk([], u))
