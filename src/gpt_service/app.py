"""``create_app(settings)``: the FastAPI app and the lifespan that builds every service once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gpt_service import __version__
from gpt_service.api.errors import install_error_handlers
from gpt_service.api.middleware import (
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    JsonBodyMiddleware,
    RequestContextMiddleware,
)
from gpt_service.api.openapi import install_docs, install_openapi
from gpt_service.api.routers import error_shapes, include_routers
from gpt_service.api.ui import mount_ui
from gpt_service.config import Settings, check_startup
from gpt_service.log_noise import silence_known_noise
from gpt_service.services.container import Services
from gpt_service.services.metrics import Metrics

logger = logging.getLogger(__name__)

DESCRIPTION = (
    "推理模型服务 - 支持本地模型训练和Ollama代理. Serves Hugging Face causal LMs with LoRA "
    "adapters through continuous batching; LoRA fine-tuning and evaluation jobs; an Ollama "
    "proxy; OpenAI- (`/v1`) and Ollama-compatible (`/api`) APIs."
)


async def _load_default_model(services: Services) -> None:
    settings, registry = services.settings, services.registry
    try:
        if settings.default_model:
            await registry.load(settings.default_model, settings.default_model_path)
    except Exception:
        logger.exception("could not load the default model '%s'", settings.default_model)
    try:
        await registry.load_configured_remotes()
    finally:
        services.is_ready = True


async def _build_services(settings: Settings, metrics: Metrics) -> Services:
    """Every service, built once (imports here keep torch out of import time)."""
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
    store = await asyncio.to_thread(JobStore, settings.store_url)  # migrates
    leases = LeaseKeeper(store, settings.job_lease_seconds, [TRAIN, EVAL], settings.replica_name)
    await leases.start()  # first sweep: jobs of a replica that is gone -> interrupted
    feed = ChangeFeed(store)
    await feed.start()
    registry = ModelRegistry(settings)
    upstream = OllamaClient(
        settings.ollama_base_url,
        settings.ollama_timeout_seconds,
        settings.ollama_connect_timeout_seconds,
    )
    generation = GenerationService(
        registry, settings.limits.max_tokens, ollama=OllamaBackend(upstream), observer=metrics
    )
    jobs = JobManager(settings, store, registry, leases)
    await jobs.start()
    evaluator = EvaluationManager(settings, store, registry, generation, leases)
    await evaluator.start()
    return Services(
        settings=settings,
        metrics=metrics,
        store=store,
        leases=leases,
        feed=feed,
        registry=registry,
        ollama_upstream=upstream,
        local_catalog=LocalCatalog(registry, settings),
        generation=generation,
        embeddings=EmbeddingService(registry, settings.limits.max_batch_prompts),
        jobs=jobs,
        evaluator=evaluator,
    )


async def _close_services(services: Services) -> None:
    """Shutdown order: background jobs first (running ones become interrupted), then models."""
    await services.evaluator.stop()
    await services.jobs.stop()
    await services.leases.stop()
    await services.feed.stop()
    await services.registry.close()
    await services.ollama_upstream.aclose()
    services.store.close()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    metrics: Metrics = app.state.metrics
    services = await _build_services(settings, metrics)
    app.state.services = metrics.services = services
    loader = asyncio.create_task(_load_default_model(services))
    if settings.wait_for_default_model:
        await loader
    try:
        yield
    finally:
        loader.cancel()
        await _close_services(services)


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
    app.state.metrics = metrics = Metrics()  # before the services: the middleware counts requests
    shapes = error_shapes()
    install_error_handlers(app, shapes)
    # Added last = outermost: request id and metrics see every response, 401 and 413 included.
    app.add_middleware(JsonBodyMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.limits.max_body_bytes, shapes=shapes)
    app.add_middleware(
        ApiKeyMiddleware, keys=settings.api_keys, docs_open=settings.docs_open, shapes=shapes
    )
    app.add_middleware(RequestContextMiddleware, observer=metrics)
    install_openapi(app, bool(settings.api_keys), shapes)
    install_docs(app)
    include_routers(app)
    mount_ui(app)
    return app
