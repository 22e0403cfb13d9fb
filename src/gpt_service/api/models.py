"""Model management: list, detail, load (with an optional LoRA adapter), unload, switch."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Query
from pydantic import Field

from gpt_service.api.deps import RegistryDep
from gpt_service.api.schemas import (
    LoadModelRequest,
    ModelDetail,
    ModelListResponse,
    ModelSummary,
    StatusResponse,
)
from gpt_service.remote.model import RemoteSpec
from gpt_service.schema_base import StrictBody

router = APIRouter(prefix="/models", tags=["models"])


class AddAdapterRequest(StrictBody):
    adapter_path: str = Field(..., min_length=1, description="LoRA adapter directory")
    adapter_name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$",
        description="name used as 'model:adapter' (default: the directory name)",
    )


def _detail(registry: RegistryDep, name: str) -> ModelDetail:
    model = registry.get(name)
    return ModelDetail(
        **asdict(registry.info(name)),
        **model.describe(),
        num_running=model.num_running,
        num_waiting=model.num_waiting,
    )


@router.get("", response_model=ModelListResponse, summary="Loaded models")
async def list_models(registry: RegistryDep) -> ModelListResponse:
    infos = registry.list()
    return ModelListResponse(
        models=[ModelSummary(**asdict(i), backend=registry.get(i.name).backend) for i in infos],
        current_model=registry.current,
        total_count=len(infos),
    )


@router.get("/{model_name}", response_model=ModelDetail, summary="One loaded model in detail")
async def get_model(model_name: str, registry: RegistryDep) -> ModelDetail:
    return _detail(registry, model_name)


@router.post("/load", response_model=StatusResponse, summary="Load a model (optionally with LoRA)")
async def load_model(body: LoadModelRequest, registry: RegistryDep) -> StatusResponse:
    if body.backend == "openai":
        spec = RemoteSpec(
            body.model_name, body.base_urls, body.remote_model or "", body.api_key, body.model_path
        )
        await registry.load_remote(spec)
    else:
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


@router.post(
    "/{model_name}/adapters",
    response_model=StatusResponse,
    summary="Add a LoRA adapter to a loaded model, for per-request use as 'model:adapter'",
)
async def add_adapter(
    model_name: str, body: AddAdapterRequest, registry: RegistryDep
) -> StatusResponse:
    adapter = await registry.add_adapter(model_name, body.adapter_path, body.adapter_name)
    return StatusResponse(
        status="success",
        message=f"adapter '{adapter}' added; use it as '{model_name}:{adapter}'",
        model=_detail(registry, model_name),
        current_model=registry.current,
    )
