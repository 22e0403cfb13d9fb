"""``create_app(settings)``: the FastAPI app and the lifespan that builds every service once."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request

from gpt_service import __version__
from gpt_service.api import generation, models, system
from gpt_service.api.errors import install_error_handlers
from gpt_service.config import Settings

logger = logging.getLogger(__name__)

DESCRIPTION = (
    "推理模型服务 - 支持本地模型训练和Ollama代理. Serves Hugging Face causal LMs with LoRA "
    "adapters through continuous batching; LoRA fine-tuning and evaluation jobs; an Ollama "
    "proxy; OpenAI- (`/v1`) and Ollama-compatible (`/api`) APIs."
)


async def _load_default_model(app: FastAPI, settings: Settings) -> None:
    registry = app.state.registry
    try:
        if settings.default_model:
            await registry.load(settings.default_model, settings.default_model_path)
    except Exception:
        logger.exception("could not load the default model '%s'", settings.default_model)
    finally:
        app.state.is_ready = True


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    from gpt_service.engine.registry import ModelRegistry
    from gpt_service.services.generation import GenerationService
    from gpt_service.store.sqlite import JobStore

    settings: Settings = app.state.settings
    settings.ensure_dirs()
    app.state.store = JobStore(settings.db_path)
    registry = ModelRegistry(settings)
    app.state.registry = registry
    app.state.generation = GenerationService(registry, settings.limits.max_tokens)
    app.state.is_ready = False
    loader = asyncio.create_task(_load_default_model(app, settings))
    if settings.wait_for_default_model:
        await loader
    try:
        yield
    finally:
        loader.cancel()
        await registry.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(
        title="GPT Service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)

    @app.middleware("http")
    async def request_id(request: Request, call_next: Any) -> Any:
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        request.state.request_id = rid
        response = await call_next(request)
        response.headers["X-Request-ID"] = rid
        return response

    for router in (system.router, models.router, generation.router):
        app.include_router(router)
    return app
