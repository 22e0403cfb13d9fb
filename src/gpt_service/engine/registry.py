"""The loaded models: one ``Engine`` each, the current model, and their adapters."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from gpt_service.config import DEMO_MODEL_DIR, DEMO_MODEL_NAME, Settings
from gpt_service.engine import loader
from gpt_service.engine.chat import encode_prompt, render_chat
from gpt_service.engine.compiled import use_cache_dir
from gpt_service.engine.engine import Engine
from gpt_service.engine.types import ModelInfo
from gpt_service.errors import (
    Conflict,
    InvalidRequest,
    ModelAlreadyLoaded,
    ModelNotFound,
    Unavailable,
)
from gpt_service.paths import looks_like_hub_id, resolve_inside

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$")


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


def not_loaded_message(name: str, loaded: list[str]) -> str:
    """What a newcomer needs after asking for a model that is not here (e.g. API.md's
    ``qwen2-7b-instruct``): what is loaded, and how to load one."""
    listed = ", ".join(f"'{n}'" for n in loaded) or "none"
    return (
        f"model '{name}' is not loaded (loaded: {listed}); load it with POST /models/load "
        f'{{"model_name": "{name}", "model_path": "<model directory or hub id>"}}'
    )


class ModelRegistry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.models: dict[str, LoadedModel] = {}
        self.current: str | None = None
        self.loading: set[str] = set()
        self._lock = asyncio.Lock()
        self.num_threads = loader.set_num_threads(settings.engine.num_threads)

    # ---- lookup --------------------------------------------------------------------
    def get(self, name: str | None = None) -> LoadedModel:
        """A loaded model by name (``None``: the current one)."""
        key = name or self.current
        if key is None:
            raise ModelNotFound("no model is loaded; load one with POST /models/load")
        if key not in self.models:
            raise ModelNotFound(not_loaded_message(key, list(self.models)))
        return self.models[key]

    def resolve(self, name: str | None) -> tuple[LoadedModel, str | None]:
        """``name`` or ``name:adapter`` -> (model, adapter name or the model's default)."""
        if name and name not in self.models and ":" in name:
            base, adapter = name.split(":", 1)
            model = self.get(base)
            return model, model.resolve_adapter(adapter)
        model = self.get(name)
        return model, model.default_adapter

    def info(self, name: str) -> ModelInfo:
        """A loaded model's description, with ``is_current`` derived from ``current``."""
        return replace(self.get(name).info, is_current=name == self.current)

    def list(self) -> list[ModelInfo]:
        return [self.info(name) for name in self.models]

    # ---- load / unload -------------------------------------------------------------
    def resolve_source(self, model_path: str) -> str:
        """A local directory inside the allowed roots, or a hub id."""
        if model_path in (DEMO_MODEL_NAME, str(DEMO_MODEL_DIR)):
            return str(DEMO_MODEL_DIR)
        roots = [self.settings.data_dir, *self.settings.model_dirs, DEMO_MODEL_DIR]
        local = (
            Path(model_path)
            if Path(model_path).is_absolute()
            else self.settings.data_dir / model_path
        )
        if local.exists() or not looks_like_hub_id(model_path):
            path = resolve_inside(model_path, self.settings.data_dir, roots)
            if not path.is_dir():
                raise ModelNotFound(f"model directory '{model_path}' does not exist")
            return str(path)
        return model_path

    def resolve_adapter_dir(self, adapter_path: str) -> Path:
        roots = [self.settings.data_dir, *self.settings.model_dirs]
        path = resolve_inside(adapter_path, self.settings.data_dir, roots)
        if not path.is_dir():
            raise ModelNotFound(f"LoRA adapter directory '{adapter_path}' does not exist")
        return path

    async def load(
        self, name: str, model_path: str | None = None, lora_adapter: str | None = None
    ) -> ModelInfo:
        if not _NAME.match(name):
            raise InvalidRequest("model_name must be 1-128 letters, digits, '.', '_' or '-'")
        async with self._lock:
            if name in self.models:
                raise ModelAlreadyLoaded(f"model '{name}' is already loaded; unload it first")
            if len(self.models) >= self.settings.limits.max_loaded_models:
                raise Conflict(
                    f"{len(self.models)} models are loaded (the limit); unload one first"
                )
            source = self.resolve_source(model_path or name)
            adapter_dir = self.resolve_adapter_dir(lora_adapter) if lora_adapter else None
            self._check_memory(source)
            self.loading.add(name)
            try:
                loaded = await asyncio.to_thread(self._load_blocking, name, source, adapter_dir)
            finally:
                self.loading.discard(name)
            self.models[name] = loaded
            if self.current is None:
                self.current = name
            logger.info("loaded model %s from %s", name, source)
            return loaded.info

    def _load_blocking(self, name: str, source: str, adapter_dir: Path | None) -> LoadedModel:
        s = self.settings
        if s.engine.compile:  # compiled graphs survive a restart
            use_cache_dir(s.data_dir / "cache" / "inductor")
        options = loader.LoadOptions(s.device, s.dtype, s.trust_remote_code, s.allow_pickle_weights)
        model, tokenizer, device = loader.load_model(source, options)
        adapters: dict[str, str] = {}
        default_adapter = None
        if adapter_dir is not None:
            default_adapter = _adapter_name(adapter_dir)
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
            max_threads=self.num_threads,
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
        )
        return LoadedModel(name, source, engine, model, tokenizer, info, default_adapter, adapters)

    async def add_adapter(
        self, name: str, adapter_path: str, adapter_name: str | None = None
    ) -> str:
        """Load one more LoRA adapter onto a loaded model, for per-request use."""
        async with self._lock:  # check-then-attach must not interleave for one name
            return await self._add_adapter(name, adapter_path, adapter_name)

    async def _add_adapter(self, name: str, adapter_path: str, adapter_name: str | None) -> str:
        loaded = self.get(name)
        adapter_dir = self.resolve_adapter_dir(adapter_path)
        key = adapter_name or _adapter_name(adapter_dir)
        if key in loaded.adapters:
            raise ModelAlreadyLoaded(f"model '{name}' already has an adapter '{key}'")

        def attach() -> None:
            loaded.model = loader.attach_adapter(loaded.model, adapter_dir, key)
            loaded.engine.runner.set_model(loaded.model)

        await loaded.engine.run_between_steps(attach)
        loaded.adapters[key] = str(adapter_dir)
        loaded.info.adapters = list(loaded.adapters)
        return key

    async def unload(self, name: str) -> None:
        async with self._lock:
            loaded = self.get(name)
            del self.models[name]
            if self.current == name:
                self.current = next(iter(self.models), None)
        await asyncio.to_thread(loaded.engine.stop, self.settings.shutdown_grace_seconds)
        logger.info("unloaded model %s", name)

    def switch(self, name: str) -> None:
        self.get(name)
        self.current = name

    async def close(self) -> None:
        for name in list(self.models):
            await self.unload(name)

    def _check_memory(self, source: str) -> None:
        path = Path(source)
        if not path.is_dir():
            return  # hub id: size unknown until downloaded
        size = sum(f.stat().st_size for f in path.glob("*.safetensors")) + sum(
            f.stat().st_size for f in path.glob("*.bin")
        )
        free = psutil.virtual_memory().available
        headroom = self.settings.limits.min_free_memory_mb * 1024 * 1024
        if size and free - size < headroom:
            raise Unavailable(
                f"not enough memory to load '{source}': needs about {size >> 20} MiB, "
                f"{free >> 20} MiB available"
            )


def _adapter_name(adapter_dir: Path) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", adapter_dir.name) or "adapter"
