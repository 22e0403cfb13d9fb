"""Model management: list, detail, load (with an optional LoRA adapter), unload, switch."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Query

from gpt_service.api.deps import RegistryDep
from gpt_service.api.schemas import (
    LoadModelRequest,
    ModelDetail,
    ModelListResponse,
    ModelSummary,
    StatusResponse,
)

router = APIRouter(prefix="/models", tags=["models"])


def _detail(registry: RegistryDep, name: str) -> ModelDetail:
    loaded = registry.get(name)
    registry.list()  # refreshes is_current
    engine = loaded.engine
    return ModelDetail(
        **asdict(loaded.info), num_running=engine.num_running, num_waiting=engine.num_waiting
    )


@router.get("", response_model=ModelListResponse, summary="Loaded models")
async def list_models(registry: RegistryDep) -> ModelListResponse:
    infos = registry.list()
    return ModelListResponse(
        models=[ModelSummary(**asdict(i)) for i in infos],
        current_model=registry.current,
        total_count=len(infos),
    )


@router.get("/{model_name}", response_model=ModelDetail, summary="One loaded model in detail")
async def get_model(model_name: str, registry: RegistryDep) -> ModelDetail:
    return _detail(registry, model_name)


@router.post("/load", response_model=StatusResponse, summary="Load a model (optionally with LoRA)")
async def load_model(body: LoadModelRequest, registry: RegistryDep) -> StatusResponse:
    await registry.load(body.model_name, body.model_path, body.lora_adapter)
    return StatusResponse(
        status="success",
        message=f"model '{body.model_name}' loaded",
        model=_detail(registry, body.model_name),
        current_model=registry.current,
    )


@router.post("/unload", response_model=StatusResponse, summary="Unload a model")
async def unload_model(registry: RegistryDep, model_name: str = Query(...)) -> StatusResponse:
    await registry.unload(model_name)
    return StatusResponse(
        status="success", message=f"model '{model_name}' unloaded", current_model=registry.current
    )


@router.post("/switch", response_model=StatusResponse, summary="Make a loaded model current")
async def switch_model(registry: RegistryDep, model_name: str = Query(...)) -> StatusResponse:
    registry.switch(model_name)
    return StatusResponse(
        status="success",
        message=f"current model is now '{model_name}'",
        current_model=registry.current,
    )
