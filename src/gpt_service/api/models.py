"""Model management: list, detail, load (with an optional LoRA adapter), unload, switch."""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, model_validator

from gpt_service.api.deps import RegistryDep
from gpt_service.remote.model import RemoteSpec
from gpt_service.schema_base import StrictBody

router = APIRouter(prefix="/models", tags=["models"])


# ---- schemas -------------------------------------------------------------------------------
class LoadModelRequest(StrictBody):
    model_name: str = Field(..., min_length=1, examples=["demo"])
    model_path: str | None = Field(
        None,
        description="local directory (relative to the data directory) or a hub id; default: model_name",
    )
    lora_adapter: str | None = Field(None, description="LoRA adapter directory")
    quantization: Literal["none", "int8"] | None = Field(
        None,
        description="local models: 'int8' keeps linear-layer weights as int8 (one stream "
        "decodes about twice as fast on CPU, greedy tokens differ slightly; no LoRA adapters); "
        "default: the server's engine.quantization",
    )
    backend: Literal["local", "openai"] = Field(
        "local", description="local engine, or a remote OpenAI-compatible engine (vLLM...)"
    )
    base_url: str | list[str] | None = Field(
        None, description="backend openai: the upstream's URL ending in /v1, or one per replica"
    )
    remote_model: str | None = Field(None, description="backend openai: the upstream's model id")
    api_key: str | None = Field(None, description="backend openai: key sent to the upstream")

    @model_validator(mode="after")
    def _remote_fields(self) -> LoadModelRequest:
        if self.backend == "openai":
            if not self.base_url or not self.remote_model:
                raise ValueError("backend 'openai' needs base_url and remote_model")
            if self.lora_adapter:
                raise ValueError(
                    "a remote model takes adapters through POST /models/{name}/adapters"
                )
            if self.quantization not in (None, "none"):
                raise ValueError("quantization applies to local models")
        elif self.quantization == "int8" and self.lora_adapter:
            raise ValueError("LoRA adapters need a model loaded without quantization")
        elif self.base_url or self.remote_model or self.api_key:
            raise ValueError("base_url, remote_model and api_key need backend 'openai'")
        return self

    @property
    def base_urls(self) -> list[str]:
        return [self.base_url] if isinstance(self.base_url, str) else list(self.base_url or [])


class ReplicaState(BaseModel):
    url: str
    healthy: bool
    outstanding: int
    requests: int
    errors: int
    mean_latency_ms: float | None
    last_error: str | None


class ModelSummary(BaseModel):
    name: str
    type: str
    backend: str = "local"
    device: str
    lora_adapter: str | None
    is_current: bool


class ModelDetail(ModelSummary):
    path: str
    dtype: str
    quantization: str = "none"
    architecture: str
    num_parameters: int
    context_length: int
    adapters: list[str]
    loaded_at: str
    num_running: int
    num_waiting: int
    remote_model: str | None = None
    replicas: list[ReplicaState] = Field(default_factory=list)
    healthy: bool = True


class ModelListResponse(BaseModel):
    models: list[ModelSummary]
    current_model: str | None
    total_count: int


class StatusResponse(BaseModel):
    status: str
    message: str
    model: ModelDetail | None = None
    current_model: str | None = None


class AddAdapterRequest(StrictBody):
    adapter_path: str = Field(..., min_length=1, description="LoRA adapter directory")
    adapter_name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$",
        description="name used as 'model:adapter' (default: the directory name)",
    )


# ---- routes --------------------------------------------------------------------------------
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
        await registry.load(body.model_name, body.model_path, body.lora_adapter, body.quantization)
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
