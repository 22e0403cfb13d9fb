"""One ``/api/generate`` or ``/api/chat`` turn: engine deltas -> Ollama's JSON objects.

Streamed as NDJSON (one object per line, the last with ``done: true``, token counts and
durations in nanoseconds), or collected into one object for ``stream: false``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from gpt_service.api.ollama.format import timestamp
from gpt_service.engine.types import StreamDelta, TokenLogprob
from gpt_service.errors import GenerationFailed
from gpt_service.services.structured import ToolPlan
from gpt_service.services.tool_calls import ToolParser, fold

NS = 1_000_000_000


def _ns(seconds: float) -> int:
    return max(int(seconds * NS), 0)


def _logprobs(items: list[TokenLogprob]) -> list[dict[str, Any]]:
    return [
        {
            "token": lp.token,
            "logprob": lp.logprob,
            "top_logprobs": [{"token": t, "logprob": p} for t, p in lp.top],
        }
        for lp in items
    ]


@dataclass
class Turn:
    model: str  # the name the client asked for, echoed as Ollama does
    is_chat: bool
    started: float  # perf_counter() when the request arrived
    load_seconds: float = 0.0
    prompt_ids: list[int] = field(default_factory=list)
    returns_context: bool = False  # /api/generate without raw
    wants_logprobs: bool = False
    tool_plan: ToolPlan | None = None  # /api/chat with tools: calls parsed from the text

    def head(self, text: str, calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "created_at": timestamp()}
        if self.is_chat:
            body["message"] = {"role": "assistant", "content": text}
            if calls:
                body["message"]["tool_calls"] = calls
        else:
            body["response"] = text
        return body

    def chunk(
        self, delta: StreamDelta, calls: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        body = self.head(delta.text, calls)
        if self.wants_logprobs:
            body["logprobs"] = _logprobs(delta.logprobs)
        body["done"] = False
        return body

    def final(
        self, final: StreamDelta, submitted: float, first: float | None, output_ids: list[int]
    ) -> dict[str, Any]:
        ended = time.perf_counter()
        first = first or ended
        body = self.head("")
        body.update(
            done=True,
            done_reason="length" if final.finish_reason == "length" else "stop",
            total_duration=_ns(ended - self.started),
            load_duration=_ns(self.load_seconds),
            prompt_eval_count=final.prompt_tokens,
            prompt_eval_duration=_ns(first - submitted),
            eval_count=final.completion_tokens,
            eval_duration=_ns(ended - first),
        )
        if self.returns_context:
            body["context"] = self.prompt_ids + output_ids
        return body

    def loaded(self, reason: str) -> dict[str, Any]:
        """Answer to a request without prompt/messages: the model was (un)loaded."""
        return {**self.head(""), "done": True, "done_reason": reason}


async def run(
    turn: Turn,
    stream: AsyncIterator[StreamDelta],
    before_final: Callable[[], Any] | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Ollama objects for one generation; an engine failure ends it with ``{"error": ...}``."""
    submitted = time.perf_counter()
    first: float | None = None
    output_ids: list[int] = []
    parser = turn.tool_plan.parser() if turn.tool_plan is not None else None
    async with aclosing(stream):  # type: ignore[type-var]
        async for delta in stream:
            output_ids += delta.token_ids
            if first is None and delta.token_ids:
                first = time.perf_counter()
            calls = _parse(parser, delta) if parser is not None else None
            if delta.text or calls or (turn.wants_logprobs and delta.logprobs):
                yield turn.chunk(delta, calls)
            if delta.is_final:
                if delta.error:
                    yield {"error": delta.error}
                    return
                if before_final is not None:
                    await before_final()
                yield turn.final(delta, submitted, first, output_ids)
                return


def _parse(parser: ToolParser, delta: StreamDelta) -> list[dict[str, Any]]:
    """Route the delta's text through the tool-call parser: ``delta.text`` keeps the content,
    the calls come back in Ollama's shape (complete, arguments as an object)."""
    events = parser.feed(delta.text) + (parser.finish() if delta.is_final else [])
    parsed = fold(events)
    delta.text = parsed.content
    return [
        {"function": {"name": c.name, "arguments": json.loads(c.arguments)}} for c in parsed.calls
    ]


async def collect(objects: AsyncIterator[dict[str, Any]], is_chat: bool) -> dict[str, Any]:
    """``stream: false``: the final object carrying the whole text (and logprobs)."""
    parts: list[str] = []
    logprobs: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    async for obj in objects:
        if "error" in obj:
            raise GenerationFailed(obj["error"])
        parts.append(obj["message"]["content"] if is_chat else obj["response"])
        calls += obj["message"].get("tool_calls", []) if is_chat else []
        logprobs += obj.get("logprobs", [])
        if obj.get("done"):
            text = "".join(parts)
            if is_chat:
                obj["message"]["content"] = text
                if calls:
                    obj["message"]["tool_calls"] = calls
            else:
                obj["response"] = text
            if logprobs:
                obj["logprobs"] = logprobs
            return obj
    raise GenerationFailed("the generation ended without a result")


async def ndjson(objects: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    async for obj in objects:
        yield (json.dumps(obj, ensure_ascii=False) + "\n").encode()
