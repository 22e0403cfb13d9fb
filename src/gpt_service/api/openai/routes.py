"""OpenAI-compatible API: /v1/models, /v1/completions, /v1/chat/completions, /v1/embeddings.

Same engine, models and adapters as the native API: ``model`` is a loaded model or
``model:adapter``. Every choice of ``n`` is its own engine sequence, submitted together so
they share forward passes. Errors under ``/v1`` use OpenAI's error object.
"""

from __future__ import annotations

import base64
import struct
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from sse_starlette.sse import EventSourceResponse

from gpt_service.api.deps import EmbeddingsDep, GenerationDep, RegistryDep, SettingsDep
from gpt_service.api.openai.chat_schemas import ChatCompletionRequest
from gpt_service.api.openai.errors import ERROR_RESPONSES
from gpt_service.api.openai.format import (
    ChatChoice,
    ChatCompletionResponse,
    CompletionChoice,
    CompletionResponse,
    EmbeddingData,
    EmbeddingResponse,
    EmbeddingUsage,
    ModelCard,
    ModelList,
    Usage,
    chat_logprobs,
    completion_logprobs,
    finish_reason,
    new_id,
    now,
)
from gpt_service.api.openai.schemas import CompletionRequest, EmbeddingRequest
from gpt_service.api.openai.stream import (
    StreamMeta,
    Streams,
    chat_events,
    close_streams,
    completion_events,
)
from gpt_service.api.openai.tools import chat_finish, chat_message
from gpt_service.config import Settings
from gpt_service.engine.types import Completion
from gpt_service.errors import InvalidRequest, ModelNotFound
from gpt_service.services.generation import GenerationService
from gpt_service.services.preparation import GenerationJob

router = APIRouter(prefix="/v1", tags=["openai"], responses=ERROR_RESPONSES)

SSE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE when stream=true"}
}


# ---- models --------------------------------------------------------------------------------
def _model_cards(registry: RegistryDep) -> list[ModelCard]:
    cards = []
    for loaded in registry.models.values():
        created = int(datetime.fromisoformat(loaded.info.loaded_at).timestamp())
        cards.append(ModelCard(id=loaded.name, created=created, root=loaded.name))
        for adapter in loaded.adapters:
            model_id = f"{loaded.name}:{adapter}"
            cards.append(
                ModelCard(id=model_id, created=created, root=loaded.name, parent=loaded.name)
            )
    return cards


@router.get("/models", response_model=ModelList, summary="Loaded models and their adapters")
async def list_models(registry: RegistryDep) -> ModelList:
    return ModelList(data=_model_cards(registry))


@router.get("/models/{model_id}", response_model=ModelCard, summary="One model or model:adapter")
async def get_model(model_id: str, registry: RegistryDep) -> ModelCard:
    for card in _model_cards(registry):
        if card.id == model_id:
            return card
    raise ModelNotFound(f"model '{model_id}' does not exist")


# ---- generation helpers ----------------------------------------------------------------------
COMPLETIONS_MAX_TOKENS = 16  # OpenAI's default for /v1/completions; chat defaults to the cap


def _max_tokens(requested: int | None, settings: Settings, default: int | None = None) -> int:
    cap = settings.limits.max_tokens
    if requested is not None:
        return requested  # over the cap: the service answers 400 naming the cap
    return min(default, cap) if default is not None else cap


def _check_num_sequences(count: int, settings: Settings) -> None:
    cap = settings.limits.max_batch_prompts
    if count > cap:
        raise InvalidRequest(
            f"n: {count} sequences (prompts x n) exceed this server's cap of {cap}"
        )


async def _open_streams(
    service: GenerationService, jobs: list[GenerationJob]
) -> tuple[Streams, str]:
    """Submit every job now, so a bad request still gets its status code before the stream."""
    streams: Streams = []
    name = ""
    try:
        for job in jobs:
            opened = await service.open_stream(job)
            streams.append(opened.deltas)
            name = opened.model_name
    except Exception:
        await close_streams(streams)
        raise
    return streams, name


def _sse(events: Any) -> EventSourceResponse:
    return EventSourceResponse(events, sep="\n", ping=15)


# ---- /v1/completions ---------------------------------------------------------------------------
@router.post(
    "/completions",
    response_model=CompletionResponse,
    responses=SSE_RESPONSE,
    summary="Text completion (legacy)",
)
async def completions(
    body: CompletionRequest,
    service: GenerationDep,
    settings: SettingsDep,
) -> Any:
    prompts = body.prompts()
    _check_num_sequences(len(prompts) * body.n, settings)
    is_ids = isinstance(prompts[0], list)  # ids are checked with every other prompt's
    max_tokens = _max_tokens(body.max_tokens, settings, COMPLETIONS_MAX_TOKENS)
    constraint = body.response_format.constraint() if body.response_format else None
    jobs = [
        GenerationJob(
            body.sampling(max_tokens, body.logprobs, i, constraint),
            body.model,
            prompt=None if is_ids else p,  # type: ignore[arg-type]
            prompt_ids=p if is_ids else None,  # type: ignore[arg-type]
        )
        for p in prompts
        for i in range(body.n)
    ]
    with_logprobs = body.logprobs is not None
    if body.stream:
        streams, name = await _open_streams(service, jobs)
        meta = StreamMeta(new_id("cmpl"), now(), name, body.n, body.include_usage, with_logprobs)
        return _sse(completion_events(streams, meta))
    outcomes = await service.complete_many(jobs)  # submitted together: they batch
    choices = [
        CompletionChoice(
            index=k,
            text=c.text,
            logprobs=completion_logprobs(c.logprobs) if with_logprobs else None,
            finish_reason=finish_reason(c.finish_reason),
        )
        for k, (c, _) in enumerate(outcomes)
    ]
    return CompletionResponse(
        id=new_id("cmpl"),
        created=now(),
        model=outcomes[0][1],
        choices=choices,
        usage=_usage(outcomes, body.n),
    )


def _usage(outcomes: list[tuple[Completion, str]], n: int) -> Usage:
    """A prompt counts once however many choices it has."""
    prompt_tokens = sum(c.prompt_tokens for c, _ in outcomes[::n])
    return Usage.of(prompt_tokens, sum(c.completion_tokens for c, _ in outcomes))


# ---- /v1/chat/completions ----------------------------------------------------------------------
@router.post(
    "/chat/completions",
    response_model=ChatCompletionResponse,
    responses=SSE_RESPONSE,
    summary="Chat completion",
)
async def chat_completions(
    body: ChatCompletionRequest, service: GenerationDep, settings: SettingsDep
) -> Any:
    _check_num_sequences(body.n, settings)
    max_tokens = _max_tokens(body.max_completion_tokens or body.max_tokens, settings)
    messages = body.engine_messages()
    plan = body.tool_plan()
    constraint = body.constraint(plan)
    jobs = [
        GenerationJob(
            body.sampling(max_tokens, body.num_logprobs, i, constraint),
            body.model,
            messages=messages,
            tool_plan=plan,
        )
        for i in range(body.n)
    ]
    if body.stream:
        streams, name = await _open_streams(service, jobs)
        meta = StreamMeta(
            new_id("chatcmpl"), now(), name, body.n, body.include_usage, body.logprobs, plan
        )
        return _sse(chat_events(streams, meta))
    outcomes = await service.complete_many(jobs)  # submitted together: they batch
    choices = []
    for k, (c, _) in enumerate(outcomes):
        message = chat_message(c.text, plan)
        choice = ChatChoice(
            index=k,
            message=message,
            logprobs=chat_logprobs(c.logprobs) if body.logprobs else None,
            finish_reason=chat_finish(c.finish_reason, plan, bool(message.tool_calls)),
        )
        choices.append(choice)
    return ChatCompletionResponse(
        id=new_id("chatcmpl"),
        created=now(),
        model=outcomes[0][1],
        choices=choices,
        usage=_usage(outcomes, body.n),
    )


# ---- /v1/embeddings ----------------------------------------------------------------------------
def _encode(vector: list[float], encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":  # little-endian float32, as the SDKs decode it
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector


@router.post(
    "/embeddings",
    response_model=EmbeddingResponse,
    summary="Embeddings (mean-pooled last hidden states, L2-normalised by default)",
)
async def embeddings(body: EmbeddingRequest, service: EmbeddingsDep) -> EmbeddingResponse:
    output, name = await service.embed(body.model, body.texts, body.normalize)
    size = len(output.vectors[0])
    if body.dimensions is not None and body.dimensions != size:
        raise InvalidRequest(
            f"dimensions: model '{name}' gives {size}-dimensional embeddings; "
            "other sizes are not supported"
        )
    data = [
        EmbeddingData(index=i, embedding=_encode(v, body.encoding_format))
        for i, v in enumerate(output.vectors)
    ]
    usage = EmbeddingUsage(prompt_tokens=output.num_tokens, total_tokens=output.num_tokens)
    return EmbeddingResponse(data=data, model=name, usage=usage)
