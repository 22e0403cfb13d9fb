"""Services reach routes through these ``Depends`` aliases, all read from the one typed
``Services`` container the app builds at start-up (``app.state.services``).

The getters are ``async``: FastAPI runs a plain ``def`` dependency in its thread pool, a
thread hop per dependency and request, which here cost the first token time under load."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from gpt_service.config import Settings
from gpt_service.services.container import Services
from gpt_service.services.embeddings import EmbeddingService
from gpt_service.services.generation import GenerationService
from gpt_service.services.local_catalog import LocalCatalog
from gpt_service.services.metrics import Metrics

if TYPE_CHECKING:  # torch behind these: typing only
    from gpt_service.engine.registry import ModelRegistry
    from gpt_service.evaluation.runner import EvaluationManager
    from gpt_service.ollama_upstream.client import OllamaClient
    from gpt_service.store.notify import ChangeFeed
    from gpt_service.training.jobs import JobManager


async def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_settings(services: ServicesDep) -> Settings:
    return services.settings


async def get_metrics(services: ServicesDep) -> Metrics:
    return services.metrics


async def get_registry(services: ServicesDep) -> ModelRegistry:
    return services.registry


async def get_generation(services: ServicesDep) -> GenerationService:
    return services.generation


async def get_embeddings(services: ServicesDep) -> EmbeddingService:
    return services.embeddings


async def get_local_catalog(services: ServicesDep) -> LocalCatalog:
    return services.local_catalog


async def get_ollama_upstream(services: ServicesDep) -> OllamaClient:
    return services.ollama_upstream


async def get_jobs(services: ServicesDep) -> JobManager:
    return services.jobs


async def get_feed(services: ServicesDep) -> ChangeFeed:
    return services.feed


async def get_evaluator(services: ServicesDep) -> EvaluationManager:
    return services.evaluator


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
RegistryDep = Annotated["ModelRegistry", Depends(get_registry)]
GenerationDep = Annotated[GenerationService, Depends(get_generation)]
EmbeddingsDep = Annotated[EmbeddingService, Depends(get_embeddings)]
LocalCatalogDep = Annotated[LocalCatalog, Depends(get_local_catalog)]
OllamaUpstreamDep = Annotated["OllamaClient", Depends(get_ollama_upstream)]
JobsDep = Annotated["JobManager", Depends(get_jobs)]
FeedDep = Annotated["ChangeFeed", Depends(get_feed)]
EvaluatorDep = Annotated["EvaluationManager", Depends(get_evaluator)]
