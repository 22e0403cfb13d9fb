"""Text generation: /generate, /generate/stream (SSE), /chat, /batch."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi import APIRouter
from sse_starlette.sse import EventSourceResponse

from gpt_service.api.deps import GenerationDep, SettingsDep
from gpt_service.api.schemas import (
    BatchRequest,
    BatchResponse,
    ChatMessage,
    ChatRequest,
    ChatResponse,
    GenerateRequest,
    GenerateResponse,
)
from gpt_service.engine.types import Completion, StreamDelta
from gpt_service.errors import InvalidRequest
from gpt_service.services.generation import GenerationJob

router = APIRouter(tags=["generation"])


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
    stream, name = await service.open_stream(job)
    return EventSourceResponse(_sse_events(stream, name), ping=15)


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
