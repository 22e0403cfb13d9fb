"""Services reach routes through these ``Depends`` aliases (built once in the app lifespan)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request

from gpt_service.config import Settings
from gpt_service.services.generation import GenerationService

if TYPE_CHECKING:
    from gpt_service.engine.registry import ModelRegistry


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


def get_generation(request: Request) -> GenerationService:
    return request.app.state.generation


def get_state(request: Request) -> Any:
    return request.app.state


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated["ModelRegistry", Depends(get_registry)]
GenerationDep = Annotated[GenerationService, Depends(get_generation)]
StateDep = Annotated[Any, Depends(get_state)]
