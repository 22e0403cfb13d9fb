"""``LoadedModel``: a model served by the local batching engine (the registry's first kind),
and ``load_local`` that builds one (weights, adapter, engine thread)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from gpt_service.config import Settings
from gpt_service.engine import loader
from gpt_service.engine.chat import encode_prompt, render_chat
from gpt_service.engine.compiled import use_cache_dir
from gpt_service.engine.engine import Engine
from gpt_service.engine.hugepages import move_to_huge_pages
from gpt_service.engine.onednn import use_onednn_linear
from gpt_service.engine.quantize import quantize_int8
from gpt_service.engine.types import (
    Completion,
    Constraint,
    ModelInfo,
    SamplingParams,
    StreamDelta,
)
from gpt_service.errors import ModelNotFound, Unavailable


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


def load_local(
    s: Settings,
    name: str,
    source: str,
    adapter_dir: Path | None,
    num_threads: int,
    quantization: str | None = None,
) -> LoadedModel:
    """Load weights (and a default adapter) and start the model's engine thread (blocking).
    ``quantization``: this model's, instead of the engine setting's."""
    if s.engine.compile:  # compiled graphs survive a restart
        use_cache_dir(s.data_dir / "cache" / "inductor")
    options = loader.LoadOptions(s.device, s.dtype, s.trust_remote_code, s.allow_pickle_weights)
    quantization = quantization or s.engine.quantization
    model, tokenizer, device = loader.load_model(source, options)
    if quantization == "int8":
        quantize_int8(model, packed=s.engine.onednn_linear)
    if s.engine.onednn_linear:
        use_onednn_linear(model)
    if s.engine.huge_pages:  # CPU weights only (a GPU model's stay where they are)
        move_to_huge_pages(model)  # the linear layers' transposed copies too
    adapters: dict[str, str] = {}
    default_adapter = None
    if adapter_dir is not None:
        default_adapter = default_adapter_name(adapter_dir)
        model = loader.attach_adapter(model, adapter_dir, default_adapter)
        adapters[default_adapter] = str(adapter_dir)
    max_context = loader.context_length(model, tokenizer)
    engine = Engine(
        name,
        model,
        tokenizer,
        device,
        loader.eos_token_ids(model, tokenizer),
        max_context,
        max_running=s.engine.max_running,
        max_waiting=s.engine.max_waiting,
        max_prefill_tokens=s.engine.max_prefill_tokens,
        max_threads=num_threads,
        compile_decode=s.engine.compile,
    )
    info = ModelInfo(
        name=name,
        path=source,
        type="local",
        device=str(device),
        dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
        architecture=(model.config.architectures or [type(model).__name__])[0],
        num_parameters=loader.count_parameters(model),
        context_length=max_context,
        lora_adapter=str(adapter_dir) if adapter_dir else None,
        adapters=list(adapters),
        loaded_at=datetime.now(UTC).isoformat(timespec="seconds"),
        quantization=quantization,
    )
    return LoadedModel(name, source, engine, model, tokenizer, info, default_adapter, adapters)


def check_memory(source: str, min_free_memory_mb: int) -> None:
    """Refuse a load that would leave less than the headroom of free memory (local dirs)."""
    path = Path(source)
    if not path.is_dir():
        return  # hub id: size unknown until downloaded
    size = sum(f.stat().st_size for f in path.glob("*.safetensors")) + sum(
        f.stat().st_size for f in path.glob("*.bin")
    )
    free = psutil.virtual_memory().available
    if size and free - size < min_free_memory_mb * 1024 * 1024:
        raise Unavailable(
            f"not enough memory to load '{source}': needs about {size >> 20} MiB, "
            f"{free >> 20} MiB available"
        )
