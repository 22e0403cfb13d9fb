"""vLLM's runtime LoRA endpoints, so tools written for vLLM (and a gpt-service gateway in
front of this one) can add adapters: ``POST /v1/load_lora_adapter``, ``/v1/unload_lora_adapter``.

The adapter goes onto the current model (or ``base_model``, our extra) and is served under
its ``lora_name`` as the ``model`` field, as vLLM does, as well as ``model:lora_name``.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from gpt_service.api.deps import RegistryDep

router = APIRouter(prefix="/v1", tags=["openai"])

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$"


class LoadLoraRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    lora_name: str = Field(..., pattern=_NAME, description="the model id to serve it under")
    lora_path: str = Field(..., min_length=1, description="adapter directory (allowed dirs)")
    base_model: str | None = Field(None, description="loaded model to add it to (default: current)")


class UnloadLoraRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    lora_name: str = Field(..., min_length=1)


@router.post(
    "/load_lora_adapter",
    response_class=PlainTextResponse,
    summary="vLLM-compatible: load a LoRA adapter at runtime",
)
async def load_lora_adapter(body: LoadLoraRequest, registry: RegistryDep) -> PlainTextResponse:
    base = await registry.load_lora(body.lora_name, body.lora_path, body.base_model)
    return PlainTextResponse(
        f"Success: LoRA adapter '{body.lora_name}' added successfully (on model '{base}')."
    )


@router.post(
    "/unload_lora_adapter",
    response_class=PlainTextResponse,
    summary="vLLM-compatible: stop serving a runtime LoRA adapter",
)
async def unload_lora_adapter(body: UnloadLoraRequest, registry: RegistryDep) -> PlainTextResponse:
    await registry.unload_lora(body.lora_name)
    return PlainTextResponse(f"Success: LoRA adapter '{body.lora_name}' removed successfully.")
