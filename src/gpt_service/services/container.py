"""``Services``: every long-lived service of one app, built once at start-up
(``app.py:_build_services``), kept as ``app.state.services`` and handed to the routes only by
the ``*Dep`` aliases of ``api/deps.py``. (``app.state`` also holds the ``Settings`` and the
``Metrics`` the app was created with: the lifespan needs them before the services exist.)"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the classes behind these imports pull torch in; typing needs none of it
    from gpt_service.config import Settings
    from gpt_service.engine.registry import ModelRegistry
    from gpt_service.evaluation.runner import EvaluationManager
    from gpt_service.ollama_upstream.client import OllamaClient
    from gpt_service.services.embeddings import EmbeddingService
    from gpt_service.services.generation import GenerationService
    from gpt_service.services.local_catalog import LocalCatalog
    from gpt_service.services.metrics import Metrics
    from gpt_service.store.jobs import JobStore
    from gpt_service.store.leases import LeaseKeeper
    from gpt_service.store.notify import ChangeFeed
    from gpt_service.training.jobs import JobManager


@dataclass
class Services:
    settings: Settings
    metrics: Metrics
    store: JobStore  # training jobs and evaluations (SQLite or PostgreSQL)
    leases: LeaseKeeper  # this replica's job leases, and the sweep of dead replicas' ones
    feed: ChangeFeed  # wakes progress streams when a job row changes
    registry: ModelRegistry  # the served models (local engine or remote) and adapters
    ollama_upstream: OllamaClient  # the upstream Ollama server (/ollama/*, use_ollama)
    local_catalog: LocalCatalog  # this server's models under Ollama names (/api/*)
    generation: GenerationService
    embeddings: EmbeddingService
    jobs: JobManager  # training jobs
    evaluator: EvaluationManager  # evaluation jobs
    is_ready: bool = False  # the default model has loaded (or failed to): GET /ready
