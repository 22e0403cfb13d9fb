"""Service information and health."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from gpt_service import __version__
from gpt_service.api.deps import ServicesDep, SettingsDep
from gpt_service.services.container import Services

if TYPE_CHECKING:
    from gpt_service.engine.registry import ModelRegistry

router = APIRouter(tags=["system"])

ENDPOINTS = {
    "health": "/health",
    "docs": "/docs",
    "models": "/models",
    "generate": "/generate",
    "generate_stream": "/generate/stream",
    "chat": "/chat",
    "batch": "/batch",
    "train": "/train",
    "evaluate": "/evaluate",
    "ollama": "/ollama/models",
    "openai": "/v1",
    "ollama_api": "/api",
    "metrics": "/metrics",
    "ui": "/ui",
}


@router.get("/", summary="Service information")
async def root(settings: SettingsDep) -> dict[str, Any]:
    return {
        "service": "GPT Service",
        "version": __version__,
        "description": "推理模型服务 - 支持本地模型训练和Ollama代理",
        "environment": settings.environment,
        "endpoints": ENDPOINTS,
    }


async def _component_states(services: Services) -> dict[str, bool]:
    return {
        "model_manager": bool(services.registry.models),
        "ollama_proxy": await services.ollama_upstream.is_reachable(),
        "trainer": services.jobs.is_alive,
        "evaluator": services.evaluator.is_alive,
    }


def store_state(services: Services) -> dict[str, Any]:
    """The job store as this replica sees it (blocking: run it in a thread)."""
    store, leases = services.store, services.leases
    view: dict[str, Any] = {"engine": store.dialect, "reachable": store.ping()}
    view["replica"] = leases.owner
    view["lease_seconds"] = leases.lease_seconds
    view["push"] = services.feed.is_listening  # LISTEN/NOTIFY up (PostgreSQL)
    if view["reachable"]:
        try:
            view["queue_depth"] = store.queue_depth()
            view["leases_held"] = store.leases_held(leases.owner)
        except Exception:  # it went away between the ping and now
            view["reachable"] = False
    return view


@router.get("/health", summary="Health check (liveness) with each component's state")
async def health(services: ServicesDep) -> dict[str, Any]:
    store = await asyncio.to_thread(store_state, services)
    components = await _component_states(services)
    return {
        "status": "healthy",
        "service": "gpt-service",
        **components,
        "store": store,
        "remote_models": _remote_states(services.registry),
    }


def _remote_states(registry: ModelRegistry) -> dict[str, dict[str, Any]]:
    """Each remote model's replicas: how many are in rotation (probed back in when down)."""
    remotes = [m for m in registry.models.values() if m.is_remote]
    return {
        m.name: {
            "healthy": m.pool.num_up > 0,
            "replicas_up": m.pool.num_up,
            "replicas": [r.describe() for r in m.pool.replicas],
        }
        for m in remotes
    }


@router.get("/ready", summary="Readiness: false while the default model is still loading")
async def ready(services: ServicesDep) -> JSONResponse:
    registry = services.registry
    body = {
        "ready": services.is_ready,
        "loading": sorted(registry.loading),
        "models": sorted(registry.models),
    }
    return JSONResponse(body, status_code=200 if services.is_ready else 503)
