"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gpt_service.config import Settings
from gpt_service.engine.registry import LoadedModel, ModelRegistry
from gpt_service.store.jobs import JobStore
from gpt_service.store.leases import LeaseKeeper
from gpt_service.training.config import TRAIN, TrainJob, TrainJobSpec, TrainParams
from gpt_service.training.jobs import JobManager
from tests.conftest import make_settings


def training_jobs(
    data_dir: Path, **training: object
) -> tuple[Settings, JobStore, LeaseKeeper, JobManager, TrainJob]:
    """A real SQLite job store, a job manager on it (not started) and one queued job."""
    settings = make_settings(data_dir, training=training) if training else make_settings(data_dir)
    settings.ensure_dirs()
    store = JobStore(settings.store_url)
    leases = LeaseKeeper(store, 30, [TRAIN])
    manager = JobManager(settings, store, None, leases, poll_interval=0.1)  # type: ignore[arg-type]
    spec = TrainJobSpec(base_model="tiny", dataset_path="d.jsonl")
    params = TrainParams(
        spec=spec, base_model_path="/m", dataset_file="/d", output_dir="o", output_path="/o"
    )
    return settings, store, leases, manager, store.create(TRAIN, params)


@pytest.fixture
async def llama(tiny_dir: Path) -> AsyncIterator[LoadedModel]:
    """The tiny random Llama loaded through a real registry (its own batching engine)."""
    settings = Settings(data_dir=tiny_dir, _env_file=None)  # type: ignore[call-arg]
    registry = ModelRegistry(settings)
    await registry.load("tiny", "models/tiny-llama")
    yield registry.get("tiny")
    await registry.close()
