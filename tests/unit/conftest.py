"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gpt_service.config import Settings
from gpt_service.engine.registry import LoadedModel, ModelRegistry


@pytest.fixture
async def llama(tiny_dir: Path) -> AsyncIterator[LoadedModel]:
    """The tiny random Llama loaded through a real registry (its own batching engine)."""
    settings = Settings(data_dir=tiny_dir, _env_file=None)  # type: ignore[call-arg]
    registry = ModelRegistry(settings)
    await registry.load("tiny", "models/tiny-llama")
    yield registry.get("tiny")
    await registry.close()
