"""Response shapes of the OpenAI-compatible API and the builders that fill them.

Field names and nesting follow the OpenAI API reference (the ``openai`` package's types), so
the official SDKs parse every response and chunk.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field, model_serializer

from gpt_service import __version__
from gpt_service.engine.types import FinishReason, TokenLogprob

SYSTEM_FINGERPRINT = f"fp_gpt-service-{__version__}"


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def finish_reason(reason: FinishReason | None) -> Literal["stop", "length"] | None:
    """The engine's reasons in OpenAI's vocabulary (a cancelled sequence simply stopped)."""
    if reason is None:
        return None
    return "length" if reason == "length" else "stop"


# ---- shared pieces -----------------------------------------------------------------------
class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int) -> Usage:
        total = prompt_tokens + completion_tokens
        return cls(
            prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, total_tokens=total
        )


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "gpt-service"
    root: str = Field(..., description="the base model")
    parent: str | None = Field(None, description="the base model of an adapter")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# ---- /v1/completions ---------------------------------------------------------------------
class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: Literal["stop", "length"] | None = None


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    system_fingerprint: str = SYSTEM_FINGERPRINT
    choices: list[CompletionChoice]
    usage: Usage | None = None


def completion_logprobs(items: list[TokenLogprob], offset: int = 0) -> CompletionLogprobs:
    """The legacy format; ``text_offset`` counts characters from the start of the generated
    text (``offset`` continues it across stream chunks)."""
    offsets = []
    for item in items:
        offsets.append(offset)
        offset += len(item.token)
    return CompletionLogprobs(
        tokens=[i.token for i in items],
        token_logprobs=[i.logprob for i in items],
        # Distinct ids can decode to the same string ("\ufffd"): keep the higher logprob.
        top_logprobs=[dict(reversed(i.top)) for i in items],
        text_offset=offsets,
    )


# ---- /v1/chat/completions ----------------------------------------------------------------
class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprobOut(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(BaseModel):
    content: list[TokenLogprobOut] | None
    refusal: list[TokenLogprobOut] | None = None


def _top(token: str, logprob: float) -> TopLogprob:
    return TopLogprob(token=token, logprob=logprob, bytes=list(token.encode("utf-8")))


def chat_logprobs(items: list[TokenLogprob]) -> ChatLogprobs:
    content = [
        TokenLogprobOut(
            **_top(i.token, i.logprob).model_dump(),
            top_logprobs=[_top(token, lp) for token, lp in i.top],
        )
        for i in items
    ]
    return ChatLogprobs(content=content)


class FunctionCallOut(BaseModel):
    name: str
    arguments: str  # JSON text


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallOut


class ChatMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None
    tool_calls: list[ToolCallOut] | None = None

    @model_serializer(mode="wrap")
    def _tool_calls_when_present(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        if not self.tool_calls:
            data.pop("tool_calls", None)
        return data


ChatFinish = Literal["stop", "length", "tool_calls"]


class ChatChoice(BaseModel):
    index: int
    message: ChatMessageOut
    logprobs: ChatLogprobs | None = None
    finish_reason: ChatFinish


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    system_fingerprint: str = SYSTEM_FINGERPRINT
    choices: list[ChatChoice]
    usage: Usage


class FunctionDelta(BaseModel):
    name: str | None = None
    arguments: str = ""

    @model_serializer
    def _name_when_known(self) -> dict[str, Any]:
        return (
            {"name": self.name, "arguments": self.arguments}
            if self.name
            else {"arguments": self.arguments}
        )


class ToolCallDelta(BaseModel):
    """The first delta of a call carries id, type and name; later ones argument text."""

    index: int
    id: str | None = None
    function: FunctionDelta

    @model_serializer
    def _start_or_more(self) -> dict[str, Any]:
        head = {"index": self.index}
        if self.id:
            head |= {"id": self.id, "type": "function"}
        return {**head, "function": self.function.model_dump()}


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None

    @model_serializer
    def _without_nulls(self) -> dict[str, Any]:
        # OpenAI sends only the fields a delta changes; the final delta is ``{}``.
        fields = (("role", self.role), ("content", self.content))
        data: dict[str, Any] = {k: v for k, v in fields if v is not None}
        if self.tool_calls:
            data["tool_calls"] = [call.model_dump() for call in self.tool_calls]
        return data


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChatDelta
    logprobs: ChatLogprobs | None = None
    finish_reason: ChatFinish | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    system_fingerprint: str = SYSTEM_FINGERPRINT
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


# ---- /v1/embeddings ----------------------------------------------------------------------
class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(..., description="floats, or base64 of float32 LE")


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingUsage
