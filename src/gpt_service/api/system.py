"""Service information and health."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from gpt_service import __version__
from gpt_service.api.deps import SettingsDep, StateDep

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


async def _component_states(state: Any) -> dict[str, bool]:
    registry = getattr(state, "registry", None)
    ollama = getattr(state, "ollama", None)
    jobs = getattr(state, "jobs", None)
    evaluator = getattr(state, "evaluator", None)
    return {
        "model_manager": bool(registry and registry.models),
        "ollama_proxy": bool(ollama and await ollama.is_reachable()),
        "trainer": bool(jobs and jobs.is_alive),
        "evaluator": bool(evaluator and evaluator.is_alive),
    }


def store_state(state: Any) -> dict[str, Any] | None:
    """The job store as this replica sees it (blocking: run it in a thread)."""
    store = getattr(state, "store", None)
    leases = getattr(state, "leases", None)
    if store is None or leases is None:
        return None
    view: dict[str, Any] = {"engine": store.dialect, "reachable": store.ping()}
    view["replica"] = leases.owner
    view["lease_seconds"] = leases.lease_seconds
    feed = getattr(state, "feed", None)
    view["push"] = bool(feed and feed.is_listening)  # LISTEN/NOTIFY up (PostgreSQL)
    if view["reachable"]:
        try:
            view["queue_depth"] = store.queue_depth()
            view["leases_held"] = store.leases_held(leases.owner)
        except Exception:  # it went away between the ping and now
            view["reachable"] = False
    return view


@router.get("/health", summary="Health check (liveness) with each component's state")
async def health(state: StateDep) -> dict[str, Any]:
    store = await asyncio.to_thread(store_state, state)
    components = await _component_states(state)
    return {
        "status": "healthy",
        "service": "gpt-service",
        **components,
        "store": store,
        "remote_models": _remote_states(state),
    }


def _remote_states(state: Any) -> dict[str, dict[str, Any]]:
    """Each remote model's replicas: how many are in rotation (probed back in when down)."""
    registry = getattr(state, "registry", None)
    remotes = [m for m in (registry.models.values() if registry else []) if m.is_remote]
    return {
        m.name: {
            "healthy": m.pool.num_up > 0,
            "replicas_up": m.pool.num_up,
            "replicas": [r.describe() for r in m.pool.replicas],
        }
        for m in remotes
    }


@router.get("/ready", summary="Readiness: false while the default model is still loading")
async def ready(state: StateDep) -> JSONResponse:
    registry = getattr(state, "registry", None)
    is_ready = bool(getattr(state, "is_ready", False)) and registry is not None
    body = {
        "ready": is_ready,
        "loading": sorted(registry.loading) if registry else [],
        "models": sorted(registry.models) if registry else [],
    }
    return JSONResponse(body, status_code=200 if is_ready else 503)
