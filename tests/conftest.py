"""Shared fixtures: settings on a temporary data directory, the app in-process, a real server."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI sets it for the server
# No background compilation in the tests' engines and servers (tests that need the compiled
# decode step turn it on for their own tiny models).
os.environ.setdefault("GPT_SERVICE_ENGINE__COMPILE", "false")

from collections.abc import AsyncIterator, Iterator  # noqa: E402
from contextlib import asynccontextmanager  # noqa: E402
from pathlib import Path  # noqa: E402

import httpx  # noqa: E402
import pytest  # noqa: E402

from gpt_service.app import create_app  # noqa: E402
from gpt_service.config import Settings  # noqa: E402
from tests.postgres import create_database, running_postgres  # noqa: E402
from tests.server import RunningServer, start_server  # noqa: E402
from tests.tiny_models import save_gpt2, save_llama  # noqa: E402


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory holding two random-initialised models of other architectures."""
    root = tmp_path_factory.mktemp("tiny-data")
    save_llama(root / "models" / "tiny-llama")
    save_gpt2(root / "models" / "tiny-gpt2")
    return root


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    return Settings(data_dir=data_dir, _env_file=None, **overrides)  # type: ignore[call-arg]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@asynccontextmanager
async def app_client(settings: Settings, timeout: float = 120) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process (lifespan run), over httpx's ASGI transport; ``client.app`` is it."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", timeout=timeout
        ) as c:
            c.app = app  # type: ignore[attr-defined]
            yield c


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process with the demo model loaded."""
    async with app_client(settings) as c:
        yield c


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A real ``gpt-service serve`` process with the demo model, shared by the e2e tests."""
    data_dir = tmp_path_factory.mktemp("server-data")
    with start_server(data_dir) as running:
        yield running


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A real PostgreSQL server for the session (started on first use)."""
    with running_postgres() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh database on it, for one test."""
    return create_database(postgres_server)
