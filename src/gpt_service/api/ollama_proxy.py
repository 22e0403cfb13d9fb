"""The Ollama proxy, ``/ollama/*``: the *upstream* Ollama server's models, pulls and
statistics (API.md's Ollama section), through ``gpt_service.ollama_upstream.OllamaClient``.

Generation through the upstream is ``use_ollama: true`` on the native generation endpoints
(``ollama_upstream/backend.py``). Not the Ollama API this service serves itself (``/api/*``,
``api/ollama/``). Upstream down -> 503, unknown upstream model -> 404, other upstream
failures -> 502, each with a ``detail``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from sse_starlette.sse import EventSourceResponse

from gpt_service.api.deps import OllamaUpstreamDep
from gpt_service.errors import ServiceError, UpstreamError

router = APIRouter(prefix="/ollama", tags=["ollama"])


class OllamaModel(BaseModel):
    name: str
    size: int = Field(0, description="bytes")
    family: str | None = None
    families: list[str] | None = None
    format: str | None = None
    parameter_size: str | None = None
    quantization_level: str | None = None
    modified_at: str | None = None
    digest: str | None = None


class OllamaModelsResponse(BaseModel):
    models: list[OllamaModel]
    total_count: int
    base_url: str


class PullResponse(BaseModel):
    status: str
    message: str
    model_name: str
    num_updates: int = Field(..., description="progress updates the upstream sent")
    total_bytes: int | None = None


class OllamaStatsResponse(BaseModel):
    reachable: bool
    base_url: str
    version: str | None
    models_available: int
    models_running: list[str]
    num_models_running: int
    requests: int = Field(..., description="calls proxied to the upstream")
    errors: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    mean_latency_ms: float | None = Field(None, description="per proxied call, to its end")


def _model(tag: dict[str, Any]) -> OllamaModel:
    details = tag.get("details") or {}
    return OllamaModel(
        name=str(tag.get("name") or tag.get("model") or ""),
        size=int(tag.get("size") or 0),
        family=details.get("family"),
        families=details.get("families"),
        format=details.get("format"),
        parameter_size=details.get("parameter_size"),
        quantization_level=details.get("quantization_level"),
        modified_at=tag.get("modified_at"),
        digest=tag.get("digest"),
    )


@router.get("/models", response_model=OllamaModelsResponse, summary="Models of the Ollama upstream")
async def list_models(client: OllamaUpstreamDep) -> OllamaModelsResponse:
    models = [_model(tag) for tag in await client.tags()]
    return OllamaModelsResponse(models=models, total_count=len(models), base_url=client.base_url)


def _progress(part: dict[str, Any]) -> dict[str, Any]:
    total, completed = part.get("total"), part.get("completed")
    if total and completed is not None:
        return {**part, "percent": round(100 * completed / total, 1)}
    return part


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False)


async def _pull_events(
    model_name: str, first: dict[str, Any], progress: AsyncIterator[dict[str, Any]]
) -> AsyncIterator[dict[str, str]]:
    last, total = first, first.get("total")
    async with aclosing(progress):  # type: ignore[type-var]
        yield {"data": _dumps(_progress(first))}
        try:
            async for part in progress:
                last, total = part, part.get("total") or total
                yield {"data": _dumps(_progress(part))}
        except ServiceError as exc:
            yield {"event": "error", "data": _dumps({"detail": exc.message})}
            return
    if last.get("status") != "success":
        detail = "the upstream ended the pull before reporting success"
        yield {"event": "error", "data": _dumps({"detail": detail})}
        return
    done = {"status": "success", "model_name": model_name, "total_bytes": total}
    yield {"event": "done", "data": _dumps(done)}


async def _pull_to_end(model_name: str, progress: AsyncIterator[dict[str, Any]]) -> PullResponse:
    parts = [part async for part in progress]
    if not parts or parts[-1].get("status") != "success":
        raise UpstreamError(f"the Ollama upstream ended the pull of '{model_name}' unfinished")
    totals = [p["total"] for p in parts if p.get("total")]
    return PullResponse(
        status="success",
        message=f"model '{model_name}' pulled",
        model_name=model_name,
        num_updates=len(parts),
        total_bytes=max(totals) if totals else None,
    )


@router.post(
    "/pull",
    response_model=PullResponse,
    summary="Pull a model into the Ollama upstream",
    description="A pull can take minutes. With `Accept: text/event-stream` or `?stream=true` "
    "the upstream's progress streams as Server-Sent Events: `message` events with `status`, "
    "`digest`, `total`, `completed` and `percent`, then `done` (or `error` with `detail`). "
    "Otherwise the request waits for the end and returns a JSON summary.",
)
async def pull(
    request: Request,
    client: OllamaUpstreamDep,
    model_name: str = Query(..., min_length=1, description="Ollama model, e.g. llama3.2"),
    stream: bool = Query(False, description="stream progress as SSE"),
) -> Any:
    progress = client.pull(model_name)
    if not (stream or "text/event-stream" in request.headers.get("accept", "")):
        return await _pull_to_end(model_name, progress)
    # The first update is awaited here, so an unreachable upstream or an unknown model
    # still gets its status code (503 / 404) instead of a 200 stream with an error event.
    try:
        first = await anext(progress)
    except StopAsyncIteration as exc:
        raise UpstreamError("the Ollama upstream sent no pull progress") from exc
    return EventSourceResponse(_pull_events(model_name, first, progress), ping=15)


@router.get("/stats", response_model=OllamaStatsResponse, summary="Upstream state and counters")
async def stats(client: OllamaUpstreamDep) -> OllamaStatsResponse:
    reachable = await client.is_reachable(max_age=0)
    version, tags, running = None, [], []
    if reachable:
        # Not counted as proxied calls: these are the statistics' own probes.
        results = await asyncio.gather(
            client.version(counted=False),
            client.tags(counted=False),
            client.ps(counted=False),
            return_exceptions=True,
        )
        version = results[0] if isinstance(results[0], str) else None
        tags = results[1] if isinstance(results[1], list) else []
        running = results[2] if isinstance(results[2], list) else []
    names = [str(m.get("name") or m.get("model")) for m in running]
    s = client.stats
    return OllamaStatsResponse(
        reachable=reachable,
        base_url=client.base_url,
        version=version,
        models_available=len(tags),
        models_running=names,
        num_models_running=len(names),
        requests=s.requests,
        errors=s.errors,
        prompt_tokens=s.prompt_tokens,
        completion_tokens=s.completion_tokens,
        total_tokens=s.prompt_tokens + s.completion_tokens,
        mean_latency_ms=s.mean_latency_ms,
    )
