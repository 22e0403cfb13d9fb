"""``LoadedModel``: a model served by the local batching engine (the registry's first kind)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpt_service.engine.chat import encode_prompt, render_chat
from gpt_service.engine.engine import Engine
from gpt_service.engine.types import (
    Completion,
    Constraint,
    ModelInfo,
    SamplingParams,
    StreamDelta,
)
from gpt_service.errors import ModelNotFound


@dataclass
class LoadedModel:
    name: str
    source: str
    engine: Engine
    model: Any
    tokenizer: Any
    info: ModelInfo
    default_adapter: str | None = None
    adapters: dict[str, str] = field(default_factory=dict)  # adapter name -> directory
    backend: str = "local"
    is_remote: bool = False

    @property
    def num_running(self) -> int:
        return self.engine.num_running

    @property
    def num_waiting(self) -> int:
        return self.engine.num_waiting

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "remote_model": None, "replicas": [], "healthy": True}

    def prepare(
        self,
        prompt: str | None = None,
        messages: list[dict[str, Any]] | None = None,
        prompt_ids: list[int] | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> list[int]:
        """The token ids the engine is given (raw prompt, chat template, or ids as they are)."""
        if prompt_ids is not None:
            return prompt_ids
        if messages is not None:
            return self.encode_chat(messages, tools)
        return self.encode(prompt or "")  # GenerationService.prepare refuses an empty prompt

    async def check_constraint(self, constraint: Constraint) -> None:
        """Compile (cached) off the event loop: a schema the grammar library refuses is a 400
        before anything is queued."""
        await asyncio.to_thread(self.engine.grammars.compile, constraint)

    async def generate(
        self, prompt_ids: list[int], params: SamplingParams, adapter: str | None = None
    ) -> Completion:
        return await self.engine.generate(prompt_ids, params, adapter)

    async def open_stream(
        self, prompt_ids: list[int], params: SamplingParams, adapter: str | None = None
    ) -> AsyncIterator[StreamDelta]:
        return self.engine.open_stream(prompt_ids, params, adapter)

    async def embed(self, texts: list[str], adapter: str | None, normalize: bool) -> Any:
        from gpt_service.engine.embeddings import embed

        return await embed(self, texts, adapter, normalize)

    def encode(self, prompt: str) -> list[int]:
        return encode_prompt(self.tokenizer, prompt)

    def encode_chat(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> list[int]:
        return encode_prompt(
            self.tokenizer, render_chat(self.tokenizer, messages, tools), is_templated=True
        )

    def resolve_adapter(self, adapter: str | None) -> str | None:
        if adapter is None:
            return self.default_adapter
        if adapter not in self.adapters:
            raise ModelNotFound(f"model '{self.name}' has no adapter '{adapter}'")
        return adapter


def default_adapter_name(adapter_dir: Path) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", adapter_dir.name) or "adapter"
