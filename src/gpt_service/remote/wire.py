"""Our prepared request and sampling as OpenAI-API bodies; their answers as engine types.

An upstream's structured ``tool_calls`` (vLLM, llama-server... parse their model's own format)
become Hermes ``<tool_call>{"name", "arguments"}</tool_call>`` text after the content: the
request's tool plan parses that format back into calls for every API dialect (``fmt`` is
set to Hermes for a remote engine in ``services/preparation.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from gpt_service.engine.types import (
    Completion,
    FinishReason,
    SamplingParams,
    StreamDelta,
    TokenLogprob,
)
from gpt_service.services.tool_calls import HERMES_CLOSE, HERMES_OPEN


@dataclass
class RemoteRequest:
    """What a remote engine is sent: raw text or token ids (completions) or messages (chat)."""

    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    prompt_ids: list[int] | None = None
    tools: list[dict[str, Any]] | None = None  # OpenAI tool definitions (chat only)

    @property
    def is_chat(self) -> bool:
        return self.messages is not None

    @property
    def path(self) -> str:
        return "/chat/completions" if self.is_chat else "/completions"


def sampling_fields(params: SamplingParams, is_chat: bool) -> dict[str, Any]:
    """Standard OpenAI fields always; vLLM/SGLang/llama-server extras only when set, so an
    upstream that is strict about unknown fields sees them only when a request asks for them."""
    body: dict[str, Any] = {
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
    }
    optional: dict[str, Any] = {
        "stop": list(params.stop) or None,
        "seed": params.seed,
        "presence_penalty": params.presence_penalty or None,
        "frequency_penalty": params.frequency_penalty or None,
        "top_k": params.top_k or None,
        "min_tokens": params.min_tokens or None,
        "ignore_eos": params.ignore_eos or None,
    }
    if params.repetition_penalty != 1.0:
        optional["repetition_penalty"] = params.repetition_penalty  # vLLM, SGLang, TGI
        optional["repeat_penalty"] = params.repetition_penalty  # llama-server's name
    body.update({k: v for k, v in optional.items() if v is not None})
    if params.constraint is not None and params.constraint.kind == "json_schema":
        schema = json.loads(params.constraint.spec)
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": schema, "strict": True},
        }
    if params.logprobs is not None:
        if is_chat:
            body.update(logprobs=True, top_logprobs=params.logprobs)
        else:
            body["logprobs"] = params.logprobs
    return body


def request_body(
    request: RemoteRequest, model: str, params: SamplingParams, stream: bool
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, **sampling_fields(params, request.is_chat)}
    if request.is_chat:
        body["messages"] = request.messages
        if request.tools:
            body["tools"] = request.tools
    else:
        body["prompt"] = request.prompt_ids if request.prompt_ids is not None else request.prompt
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return body


def finish_reason(value: object) -> FinishReason | None:
    if value is None:
        return None
    return "length" if value == "length" else "stop"


def _choice(data: dict[str, Any]) -> dict[str, Any]:
    choices = data.get("choices") or []
    return choices[0] if choices and isinstance(choices[0], dict) else {}


def choice_text(choice: dict[str, Any]) -> str:
    if "text" in choice:
        return str(choice.get("text") or "")
    part = choice.get("delta") or choice.get("message") or {}
    return str(part.get("content") or "")


def calls_text(calls: object) -> str:
    """OpenAI ``tool_calls`` (arguments as JSON text) as Hermes-tagged text."""
    parts = []
    for call in calls if isinstance(calls, list) else []:
        function = (call.get("function") if isinstance(call, dict) else None) or {}
        body = {"name": function.get("name"), "arguments": function.get("arguments") or "{}"}
        parts.append(f"{HERMES_OPEN}{json.dumps(body, ensure_ascii=False)}{HERMES_CLOSE}")
    return "".join(parts)


def _message_calls(choice: dict[str, Any]) -> object:
    return (choice.get("message") or {}).get("tool_calls")


def choice_logprobs(choice: dict[str, Any]) -> list[TokenLogprob]:
    """Chat (``content`` entries) or completions (parallel lists) logprobs as ours."""
    data = choice.get("logprobs")
    if not isinstance(data, dict):
        return []
    if isinstance(data.get("content"), list):
        return [
            TokenLogprob(
                str(e.get("token", "")),
                float(e.get("logprob") or 0.0),
                [(str(t["token"]), float(t["logprob"])) for t in e.get("top_logprobs") or []],
            )
            for e in data["content"]
        ]
    tokens = data.get("tokens") or []
    values = data.get("token_logprobs") or []
    tops = data.get("top_logprobs") or [None] * len(tokens)
    return [
        TokenLogprob(str(t), float(v or 0.0), [(str(k), float(x)) for k, x in (top or {}).items()])
        for t, v, top in zip(tokens, values, tops, strict=False)
    ]


def usage_counts(data: dict[str, Any]) -> tuple[int, int]:
    usage = data.get("usage") or {}
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


def completion_of(data: dict[str, Any], seconds: float) -> Completion:
    choice = _choice(data)
    prompt_tokens, completion_tokens = usage_counts(data)
    return Completion(
        text=choice_text(choice) + calls_text(_message_calls(choice)),
        finish_reason=finish_reason(choice.get("finish_reason")) or "stop",
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        logprobs=choice_logprobs(choice),
        total_seconds=seconds,
    )


@dataclass
class StreamState:
    """Folds SSE chunks into our deltas: text as it comes, one final delta at the end.
    Tool calls come in pieces (``delta.tool_calls``, by index): sent whole with the chunk
    that carries the finish reason."""

    finish: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    chunks: int = 0
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)

    def delta(self, part: dict[str, Any]) -> StreamDelta | None:
        if part.get("usage"):
            self.prompt_tokens, self.completion_tokens = usage_counts(part)
        choice = _choice(part)
        if not choice:
            return None
        self.finish = finish_reason(choice.get("finish_reason")) or self.finish
        self._add_calls((choice.get("delta") or {}).get("tool_calls"))
        text = choice_text(choice)
        if self.calls and choice.get("finish_reason"):
            text += calls_text(list(self.calls.values()))
            self.calls = {}
        logprobs = choice_logprobs(choice)
        if not text and not logprobs:
            return None
        self.chunks += 1
        return StreamDelta(text=text, logprobs=logprobs)

    def _add_calls(self, pieces: object) -> None:
        for piece in pieces if isinstance(pieces, list) else []:
            if not isinstance(piece, dict):
                continue
            index = piece.get("index")
            call = self.calls.setdefault(index if isinstance(index, int) else 0, {"function": {}})
            function, more = call["function"], piece.get("function") or {}
            if more.get("name"):
                function["name"] = more["name"]
            function["arguments"] = function.get("arguments", "") + (more.get("arguments") or "")

    def final(self) -> StreamDelta:
        if self.finish is None:
            return StreamDelta(
                finish_reason="error", error="the remote engine ended the stream early"
            )
        return StreamDelta(
            finish_reason=self.finish,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens or self.chunks,
        )
