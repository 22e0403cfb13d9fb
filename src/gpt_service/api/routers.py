"""Every router of the app, included one way (``include_routers``), and the error shape each
API dialect answers in under its router's prefix."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, FastAPI

from gpt_service.api import (
    datasets,
    evaluation,
    generation,
    metrics,
    models,
    ollama_proxy,
    system,
    training,
)
from gpt_service.api.errors import ErrorShaper, ErrorShapes
from gpt_service.api.ollama import routes as ollama_api
from gpt_service.api.ollama.format import ollama_error
from gpt_service.api.openai import lora as openai_lora
from gpt_service.api.openai import routes as openai_api
from gpt_service.api.openai.errors import openai_error


@dataclass(frozen=True)
class Mount:
    router: APIRouter
    error_shape: ErrorShaper | None = None  # errors under the router's prefix; None: {"detail"}


# In the order /docs lists them.
MOUNTS: tuple[Mount, ...] = (
    Mount(metrics.router),
    Mount(evaluation.router),
    Mount(training.router),
    Mount(system.router),
    Mount(models.router),
    Mount(generation.router),
    Mount(openai_api.router, openai_error),  # /v1
    Mount(openai_lora.router),  # /v1 too (vLLM's adapter endpoints): OpenAI's error shape
    Mount(ollama_proxy.router),  # /ollama: the upstream Ollama's models ({"detail"} errors)
    Mount(ollama_api.router, ollama_error),  # /api: the Ollama API served here
    Mount(datasets.router),
)


def error_shapes(mounts: tuple[Mount, ...] = MOUNTS) -> ErrorShapes:
    return ErrorShapes(tuple((m.router.prefix, m.error_shape) for m in mounts if m.error_shape))


def include_routers(app: FastAPI, mounts: tuple[Mount, ...] = MOUNTS) -> None:
    for mount in mounts:
        app.include_router(mount.router)
