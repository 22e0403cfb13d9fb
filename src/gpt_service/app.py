"""``create_app(settings)``: the FastAPI app and the lifespan that builds every service once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from gpt_service import __version__
from gpt_service.api import evaluation as evaluation_api
from gpt_service.api import generation, models, ollama_proxy, system
from gpt_service.api import metrics as metrics_api
from gpt_service.api import training as training_api
from gpt_service.api.datasets import router as datasets_router
from gpt_service.api.errors import install_error_handlers
from gpt_service.api.middleware import (
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    JsonBodyMiddleware,
    RequestContextMiddleware,
)
from gpt_service.api.ollama import routes as ollama_api
from gpt_service.api.openai import lora as lora_admin
from gpt_service.api.openai import routes as openai
from gpt_service.api.openapi import install_docs, install_openapi
from gpt_service.api.ui import mount_ui
from gpt_service.config import Settings, check_startup
from gpt_service.log_noise import silence_known_noise
from gpt_service.services.metrics import Metrics

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
    try:
        await registry.load_configured_remotes()
    finally:
        app.state.is_ready = True


async def _build_services(state: Any, settings: Settings) -> None:
    """Every service, built once, into ``app.state`` (imports here keep torch out of import time)."""
    from gpt_service.engine.registry import ModelRegistry
    from gpt_service.evaluation.runner import EvaluationManager
    from gpt_service.evaluation.spec import EVAL
    from gpt_service.ollama_upstream.backend import OllamaBackend
    from gpt_service.ollama_upstream.client import OllamaClient
    from gpt_service.services.embeddings import EmbeddingService
    from gpt_service.services.generation import GenerationService
    from gpt_service.services.local_catalog import LocalCatalog
    from gpt_service.store.jobs import JobStore
    from gpt_service.store.leases import LeaseKeeper
    from gpt_service.store.notify import ChangeFeed
    from gpt_service.training.config import TRAIN
    from gpt_service.training.jobs import JobManager

    settings.ensure_dirs()
    state.store = store = await asyncio.to_thread(JobStore, settings.store_url)  # migrates
    state.leases = LeaseKeeper(
        store, settings.job_lease_seconds, [TRAIN, EVAL], settings.replica_name
    )
    await state.leases.start()  # first sweep: jobs of a replica that is gone -> interrupted
    state.feed = ChangeFeed(store)
    await state.feed.start()
    state.registry = registry = ModelRegistry(settings)
    state.ollama = OllamaClient(
        settings.ollama_base_url,
        settings.ollama_timeout_seconds,
        settings.ollama_connect_timeout_seconds,
    )
    state.ollama_catalog = LocalCatalog(registry, settings)
    state.generation = GenerationService(
        registry,
        settings.limits.max_tokens,
        ollama=OllamaBackend(state.ollama),
        observer=state.metrics,
    )
    state.embeddings = EmbeddingService(registry, settings.limits.max_batch_prompts)
    state.jobs = JobManager(settings, store, registry, state.leases)
    await state.jobs.start()
    state.evaluator = EvaluationManager(settings, store, registry, state.generation, state.leases)
    await state.evaluator.start()


async def _close_services(state: Any) -> None:
    """Shutdown order: background jobs first (running ones become interrupted), then models."""
    await state.evaluator.stop()
    await state.jobs.stop()
    await state.leases.stop()
    await state.feed.stop()
    await state.registry.close()
    await state.ollama.aclose()
    state.store.close()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    app.state.is_ready = False
    await _build_services(app.state, settings)
    loader = asyncio.create_task(_load_default_model(app, settings))
    if settings.wait_for_default_model:
        await loader
    try:
        yield
    finally:
        loader.cancel()
        await _close_services(app.state)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    check_startup(settings)
    silence_known_noise()
    app = FastAPI(
        title="GPT Service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by install_docs, from local files
        redoc_url=None,
    )
    app.state.settings = settings
    install_error_handlers(app)

    app.state.metrics = Metrics(lambda: app.state)
    # Added last = outermost: request id and metrics see every response, 401 and 413 included.
    app.add_middleware(JsonBodyMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.limits.max_body_bytes)
    app.add_middleware(ApiKeyMiddleware, keys=settings.api_keys, docs_open=settings.docs_open)
    app.add_middleware(RequestContextMiddleware, observer=app.state.metrics)
    install_openapi(app, bool(settings.api_keys))
    install_docs(app)
    app.include_router(metrics_api.router)
    app.include_router(evaluation_api.router)
    app.include_router(training_api.router)

    for router in (
        system.router,
        models.router,
        generation.router,
        openai.router,
        lora_admin.router,
    ):
        app.include_router(router)
    app.include_router(ollama_proxy.router)
    app.include_router(ollama_api.router)
    app.include_router(datasets_router)
    mount_ui(app)
    return app
