"""The Ollama API served natively (``/api``), so tools written for Ollama can use this service.

``/api/generate`` and ``/api/chat`` stream NDJSON by default (``stream: false`` for one
object); models load on first use and ``keep_alive: 0`` unloads them afterwards; errors
have Ollama's shape ``{"error": "..."}``. Tags name LoRA adapters: ``demo:my-lora``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, StreamingResponse

from gpt_service import __version__
from gpt_service.api.deps import GenerationDep, LocalCatalogDep
from gpt_service.api.ollama.format import ps_entry, show_body, tag_entry
from gpt_service.api.ollama.schemas import ChatBody, GenerateBody, ModelBody, OllamaRequest
from gpt_service.api.ollama.stream import Turn, collect, ndjson, run
from gpt_service.errors import ModelNotFound, ServiceError
from gpt_service.services.local_catalog import LocalCatalog
from gpt_service.services.preparation import GenerationJob

router = APIRouter(prefix="/api", tags=["ollama-api"])

NDJSON = "application/x-ndjson"


@router.get("/version", summary="Ollama: server version")
async def version() -> dict[str, str]:
    return {"version": __version__}


@router.get("/tags", summary="Ollama: models available (loaded, bundled, under models/)")
async def tags(catalog: LocalCatalogDep) -> dict[str, Any]:
    return {"models": [tag_entry(e) for e in catalog.entries()]}


@router.get("/ps", summary="Ollama: models loaded in memory")
async def ps(catalog: LocalCatalogDep) -> dict[str, Any]:
    running = [e for e in catalog.entries() if e.loaded is not None and not e.adapter_dir]
    return {"models": [ps_entry(e) for e in running]}


@router.post("/show", summary="Ollama: model details, template, parameters, model_info")
async def show(body: ModelBody, catalog: LocalCatalogDep) -> dict[str, Any]:
    return show_body(catalog.find(body.model))


@router.post(
    "/pull",
    summary="Ollama: make a local model ready (loads it); no registry downloads",
    description='Streams NDJSON progress ending with `{"status": "success"}` (or '
    '`{"error": ...}`); `stream: false` answers once. Only models that exist locally can be '
    "pulled: loaded ones, the bundled demo, or a directory under `<data_dir>/models`.",
)
async def pull(body: ModelBody, catalog: LocalCatalogDep) -> Any:
    if not catalog.is_available(body.model):
        raise ModelNotFound(
            f"pull model manifest: model '{body.model}' not found locally; this server does "
            f"not download models: put a Hugging Face model directory at "
            f"{catalog.settings.models_dir}/<name>"
        )
    if not body.stream:
        await catalog.ensure_loaded(body.model)
        return {"status": "success"}
    return StreamingResponse(ndjson(_pull_progress(catalog, body.model)), media_type=NDJSON)


async def _pull_progress(catalog: LocalCatalog, name: str) -> AsyncIterator[dict[str, Any]]:
    entry = catalog.find(name)
    total = entry.files.size_bytes if entry.files else 0
    step = {"status": f"loading {entry.base} from {entry.source}", "total": total}
    yield {"status": "pulling manifest"}
    yield {**step, "completed": total if entry.loaded else 0}
    try:
        await catalog.ensure_loaded(name)
    except ServiceError as exc:
        yield {"error": exc.message}
        return
    yield {**step, "completed": total}
    yield {"status": "success"}


async def _prepare(body: OllamaRequest, catalog: LocalCatalog, is_chat: bool) -> tuple[Turn, str]:
    started = time.perf_counter()
    unloads = body.unloads  # validates keep_alive before any work
    name = catalog.local_name(body.model)
    load_seconds = await catalog.ensure_loaded(name, keep=not unloads)
    turn = Turn(body.model, is_chat, started, load_seconds, wants_logprobs=bool(body.logprobs))
    return turn, name


async def _answer_loaded(
    body: OllamaRequest, catalog: LocalCatalog, is_chat: bool
) -> dict[str, Any]:
    """No prompt / no messages: load the model, or unload it with keep_alive 0."""
    turn = Turn(body.model, is_chat, time.perf_counter())
    if body.unloads:
        if not catalog.is_available(body.model):
            raise ModelNotFound(f"model '{body.model}' not found")
        name = catalog.local_name(body.model)
        if catalog.split(name)[0] in catalog.registry.models:
            await catalog.unload_now(name)
        return turn.loaded("unload")
    await catalog.ensure_loaded(catalog.local_name(body.model))
    return turn.loaded("load")


async def _respond(
    turn: Turn,
    job: GenerationJob,
    body: OllamaRequest,
    service: GenerationDep,
    catalog: LocalCatalog,
) -> Any:
    name = job.model_name or ""
    opened = await service.open_stream(job)
    turn.prompt_ids = opened.prompt_ids or []
    turn.returns_context = job.templated and opened.prompt_ids is not None  # not raw, local
    stream = opened.deltas

    async def unload() -> None:
        await catalog.unload_after_use(name)

    async def objects() -> AsyncIterator[dict[str, Any]]:
        try:
            async for obj in run(turn, stream, unload if body.unloads else None):
                yield obj
        finally:
            if body.unloads:  # also when the client hung up before the end
                catalog.schedule_unload(name)

    if not body.stream:
        return JSONResponse(await collect(objects(), turn.is_chat))
    return StreamingResponse(ndjson(objects()), media_type=NDJSON)


@router.post("/generate", summary="Ollama: complete a prompt (NDJSON stream by default)")
async def generate(body: GenerateBody, catalog: LocalCatalogDep, service: GenerationDep) -> Any:
    if not body.prompt:
        return await _answer_loaded(body, catalog, is_chat=False)
    body.check_supported()
    turn, name = await _prepare(body, catalog, is_chat=False)
    params = body.options.sampling(service.max_tokens_cap, body.num_logprobs, body.constraint())
    job = GenerationJob(
        params,
        name,
        prompt=body.prompt,
        templated=not body.raw,  # prompt and system as a chat turn (raw: the prompt alone)
        system=body.system,
        context_ids=body.context,  # checked against the vocabulary with the prompt's ids
    )
    return await _respond(turn, job, body, service, catalog)


@router.post("/chat", summary="Ollama: next chat message (NDJSON stream by default)")
async def chat(body: ChatBody, catalog: LocalCatalogDep, service: GenerationDep) -> Any:
    if not body.messages:
        return await _answer_loaded(body, catalog, is_chat=True)
    body.check_supported()
    turn, name = await _prepare(body, catalog, is_chat=True)
    messages = [m.to_engine() for m in body.messages]
    params = body.options.sampling(service.max_tokens_cap, body.num_logprobs, body.constraint())
    job = GenerationJob(params, name, messages=messages, tool_plan=body.tool_plan())
    turn.tool_plan = job.tool_plan
    return await _respond(turn, job, body, service, catalog)
