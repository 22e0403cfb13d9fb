"""Text generation: /generate, /generate/stream (SSE), /chat, /batch."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field, field_validator
from sse_starlette.sse import EventSourceResponse

from gpt_service.api.deps import GenerationDep, SettingsDep
from gpt_service.api.openai.structured import ResponseFormat
from gpt_service.engine.types import Completion, SamplingParams, StreamDelta
from gpt_service.errors import InvalidRequest
from gpt_service.schema_base import StrictBody
from gpt_service.services.preparation import GenerationJob

router = APIRouter(tags=["generation"])


# ---- schemas (fields as in API.md, plus documented extras) ----------------------------------
class SamplingFields(StrictBody):
    model_name: str | None = Field(
        None, description="loaded model (default: current); 'name:adapter' picks a LoRA adapter"
    )
    max_tokens: int = Field(512, ge=1, description="maximum new tokens")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="0 means greedy")
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0, description="0 disables top-k")
    repetition_penalty: float = Field(1.0, gt=0.0, le=10.0)
    stop: list[str] | None = Field(None, description="stop strings (not included in the text)")
    seed: int | None = Field(None, ge=0, description="makes sampling reproducible")
    min_tokens: int = Field(0, ge=0, description="end-of-sequence is blocked before this many")
    ignore_eos: bool = Field(False, description="keep generating past end-of-sequence")
    use_ollama: bool = Field(False, description="send the request to the Ollama upstream")
    response_format: ResponseFormat | None = Field(
        None,
        description='structured output, as OpenAI\'s: {"type": "json_object"} or {"type": '
        '"json_schema", "json_schema": {"name": ..., "schema": {...}}}; the output is '
        "guaranteed to parse and match the schema (finish_reason length aside)",
    )

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    def sampling(self) -> SamplingParams:
        return SamplingParams(
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            repetition_penalty=self.repetition_penalty,
            stop=tuple(self.stop or ()),
            seed=self.seed,
            min_tokens=self.min_tokens,
            ignore_eos=self.ignore_eos,
            constraint=self.response_format.constraint() if self.response_format else None,
        )


class GenerateRequest(SamplingFields):
    prompt: str = Field(..., min_length=1, examples=["你好，请介绍一下人工智能。"])

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("prompt must not be blank")
        return value


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool"]
    content: str


class ChatRequest(SamplingFields):
    messages: list[ChatMessage] = Field(..., min_length=1)


class BatchRequest(SamplingFields):
    prompts: list[str] = Field(
        ..., min_length=1, examples=[["什么是机器学习？", "什么是深度学习？"]]
    )

    @field_validator("prompts")
    @classmethod
    def _no_blank(cls, value: list[str]) -> list[str]:
        for i, prompt in enumerate(value):
            if not prompt.strip():
                raise ValueError(f"prompt {i} is blank")
        return value


class GenerateResponse(BaseModel):
    text: str
    model_name: str
    tokens_generated: int
    prompt_tokens: int
    finish_reason: str
    generation_time: float = Field(..., description="seconds")


class ChatResponse(GenerateResponse):
    message: ChatMessage


class BatchResponse(BaseModel):
    results: list[GenerateResponse]
    model_name: str
    total_count: int
    total_tokens_generated: int


# ---- routes ----------------------------------------------------------------------------------


def _response(completion: Completion, model_name: str) -> GenerateResponse:
    return GenerateResponse(
        text=completion.text,
        model_name=model_name,
        tokens_generated=completion.completion_tokens,
        prompt_tokens=completion.prompt_tokens,
        finish_reason=completion.finish_reason,
        generation_time=round(completion.total_seconds, 4),
    )


@router.post("/generate", response_model=GenerateResponse, summary="Generate text")
async def generate(body: GenerateRequest, service: GenerationDep) -> GenerateResponse:
    job = GenerationJob(
        body.sampling(), body.model_name, prompt=body.prompt, use_ollama=body.use_ollama
    )
    completion, name = await service.complete(job)
    return _response(completion, name)


def _dumps(data: dict) -> str:
    return json.dumps(data, ensure_ascii=False)


async def _sse_events(stream: AsyncIterator[StreamDelta], model_name: str) -> AsyncIterator[dict]:
    """One ``message`` event per generated token (its text may be empty while a character is
    incomplete), then ``done`` (or ``error``)."""
    num_tokens = 0
    async for delta in stream:
        # A remote engine sends text without ids: each of its chunks is a token.
        num_tokens += len(delta.token_ids) or int(bool(delta.text) and not delta.is_final)
        if delta.text or delta.token_ids:
            yield {"data": _dumps({"text": delta.text, "tokens_generated": num_tokens})}
        if delta.is_final:
            if delta.error:
                yield {"event": "error", "data": _dumps({"detail": delta.error})}
                return
            done = {
                "finish_reason": delta.finish_reason,
                "tokens_generated": delta.completion_tokens,
                "prompt_tokens": delta.prompt_tokens,
                "model_name": model_name,
            }
            yield {"event": "done", "data": _dumps(done)}


@router.post(
    "/generate/stream",
    summary="Generate text as Server-Sent Events",
    description='Events: one `message` per generated token, `{"text": increment, '
    '"tokens_generated": n}` (the increment is empty while a character is incomplete); '
    "finally `done` with `finish_reason` and token counts (or `error` with `detail`).",
)
async def generate_stream(body: GenerateRequest, service: GenerationDep) -> EventSourceResponse:
    job = GenerationJob(
        body.sampling(), body.model_name, prompt=body.prompt, use_ollama=body.use_ollama
    )
    opened = await service.open_stream(job)
    return EventSourceResponse(_sse_events(opened.deltas, opened.model_name), ping=15)


@router.post("/chat", response_model=ChatResponse, summary="Chat with the model's chat template")
async def chat(body: ChatRequest, service: GenerationDep) -> ChatResponse:
    messages = [m.model_dump() for m in body.messages]
    job = GenerationJob(
        body.sampling(), body.model_name, messages=messages, use_ollama=body.use_ollama
    )
    completion, name = await service.complete(job)
    base = _response(completion, name)
    return ChatResponse(
        **base.model_dump(), message=ChatMessage(role="assistant", content=completion.text)
    )


@router.post(
    "/batch", response_model=BatchResponse, summary="Generate for several prompts together"
)
async def batch(body: BatchRequest, service: GenerationDep, settings: SettingsDep) -> BatchResponse:
    if len(body.prompts) > settings.limits.max_batch_prompts:
        raise InvalidRequest(
            f"{len(body.prompts)} prompts exceed the cap of {settings.limits.max_batch_prompts}"
        )
    params = body.sampling()
    jobs = [
        GenerationJob(params, body.model_name, prompt=p, use_ollama=body.use_ollama)
        for p in body.prompts
    ]
    # All prompts are submitted at once, so the engine batches them into shared forward passes.
    outcomes = await service.complete_many(jobs)
    results = [_response(c, name) for c, name in outcomes]
    return BatchResponse(
        results=results,
        model_name=results[0].model_name,
        total_count=len(results),
        total_tokens_generated=sum(r.tokens_generated for r in results),
    )
