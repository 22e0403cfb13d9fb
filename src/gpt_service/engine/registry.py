"""The served models, the current one, and their adapters.

A model is served by a backend: the local batching engine (``LoadedModel``) or a remote
OpenAI-compatible engine (``RemoteModel``). Both answer ``prepare`` / ``generate`` /
``open_stream`` with the same deltas, so callers never ask which one they hold; the registry
alone decides which to build.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import psutil

from gpt_service.config import DEMO_MODEL_DIR, DEMO_MODEL_NAME, Settings
from gpt_service.engine import loader
from gpt_service.engine.compiled import use_cache_dir
from gpt_service.engine.engine import Engine
from gpt_service.engine.loaded import LoadedModel, default_adapter_name
from gpt_service.engine.types import ModelInfo
from gpt_service.errors import (
    Conflict,
    InvalidRequest,
    ModelAlreadyLoaded,
    ModelNotFound,
    Unavailable,
)
from gpt_service.paths import looks_like_hub_id, path_errors, resolve_inside
from gpt_service.remote.model import RemoteModel, RemoteSpec, connect
from gpt_service.remote.pool import ReplicaPool
from gpt_service.remote.settings import check_allowed, check_urls, configured_specs

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$")


ServedModel = LoadedModel | RemoteModel


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
        self.models: dict[str, ServedModel] = {}
        # vLLM-style runtime adapters are addressed by their own name: name -> (model, adapter)
        self.adapter_aliases: dict[str, tuple[str, str]] = {}
        self.current: str | None = None
        self.loading: set[str] = set()
        self._lock = asyncio.Lock()
        self.num_threads = loader.set_num_threads(settings.engine.num_threads)

    # ---- lookup --------------------------------------------------------------------
    def get(self, name: str | None = None) -> ServedModel:
        """A loaded model by name (``None``: the current one)."""
        key = name or self.current
        if key is None:
            raise ModelNotFound("no model is loaded; load one with POST /models/load")
        if key not in self.models:
            raise ModelNotFound(not_loaded_message(key, list(self.models)))
        return self.models[key]

    def resolve(self, name: str | None) -> tuple[ServedModel, str | None]:
        """``name``, ``name:adapter`` or an adapter alias -> (model, adapter name or default)."""
        if name and name not in self.models and name in self.adapter_aliases:
            base, adapter = self.adapter_aliases[name]
            model = self.get(base)
            return model, model.resolve_adapter(adapter)
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
        with path_errors():
            return self._resolve_source(model_path)

    def _resolve_source(self, model_path: str) -> str:
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
        with path_errors():
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

    async def load_remote(self, spec: RemoteSpec, trusted: bool = False) -> ModelInfo:
        """Register a model served by a remote OpenAI-compatible engine (one URL per replica).

        ``trusted``: listed in settings (always allowed, and an upstream still down at
        start-up is probed until it answers); otherwise every URL must match an allowed prefix.
        """
        if not _NAME.match(spec.name):
            raise InvalidRequest("model_name must be 1-128 letters, digits, '.', '_' or '-'")
        spec.base_urls = check_urls(spec.base_urls)
        if not trusted:
            check_allowed(spec.base_urls, self.settings.remote)
        if spec.weights_path:
            spec.weights_path = self.resolve_source(spec.weights_path)
        async with self._lock:
            if spec.name in self.models:
                raise ModelAlreadyLoaded(f"model '{spec.name}' is already loaded; unload it first")
            r = self.settings.remote
            pool = ReplicaPool(
                spec.base_urls,
                spec.api_key,
                r.read_timeout_seconds,
                r.connect_timeout_seconds,
                r.probe_interval_seconds,
            )
            model = await connect(spec, pool, require_up=not trusted)
            self.models[spec.name] = model
            if self.current is None:
                self.current = spec.name
        logger.info("registered remote model %s (%s)", spec.name, ", ".join(spec.base_urls))
        return model.info

    async def load_configured_remotes(self) -> None:
        """The remote models listed in settings; one that fails is logged, not fatal."""
        for spec in configured_specs(self.settings.remote):
            try:
                await self.load_remote(spec, trusted=True)
            except Exception:
                logger.exception("could not register the remote model '%s'", spec.name)

    def _load_blocking(self, name: str, source: str, adapter_dir: Path | None) -> LoadedModel:
        s = self.settings
        if s.engine.compile:  # compiled graphs survive a restart
            use_cache_dir(s.data_dir / "cache" / "inductor")
        options = loader.LoadOptions(s.device, s.dtype, s.trust_remote_code, s.allow_pickle_weights)
        model, tokenizer, device = loader.load_model(source, options)
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
        key = adapter_name or default_adapter_name(adapter_dir)
        if isinstance(loaded, RemoteModel):  # registered on the upstream (shared storage)
            return await loaded.add_adapter(str(adapter_dir), key)
        if key in loaded.adapters:
            raise ModelAlreadyLoaded(f"model '{name}' already has an adapter '{key}'")

        def attach() -> None:
            loaded.model = loader.attach_adapter(loaded.model, adapter_dir, key)
            loaded.engine.runner.set_model(loaded.model)

        await loaded.engine.run_between_steps(attach)
        loaded.adapters[key] = str(adapter_dir)
        loaded.info.adapters = list(loaded.adapters)
        return key

    async def load_lora(self, lora_name: str, lora_path: str, base: str | None = None) -> str:
        """vLLM's runtime LoRA load: the adapter goes onto ``base`` (default: the current
        model) and is also addressable by its own name, as vLLM serves it."""
        if lora_name in self.models or lora_name in self.adapter_aliases:
            raise ModelAlreadyLoaded(f"a model or adapter named '{lora_name}' is already loaded")
        model = self.get(base)
        await self.add_adapter(model.name, lora_path, lora_name)
        self.adapter_aliases[lora_name] = (model.name, lora_name)
        return model.name

    async def unload_lora(self, lora_name: str) -> None:
        """Stop serving an adapter loaded by ``load_lora`` (local weights stay attached until
        the model is unloaded: requests still running with it must finish)."""
        if lora_name not in self.adapter_aliases:
            raise ModelNotFound(f"no LoRA adapter named '{lora_name}' was loaded at runtime")
        base, adapter = self.adapter_aliases.pop(lora_name)
        model = self.models.get(base)
        if model is None:
            return
        if isinstance(model, RemoteModel):
            await model.remove_adapter(adapter)
        model.adapters.pop(adapter, None)
        model.info.adapters = list(model.adapters)

    async def unload(self, name: str) -> None:
        async with self._lock:
            loaded = self.get(name)
            del self.models[name]
            if self.current == name:
                self.current = next(iter(self.models), None)
            self.adapter_aliases = {k: v for k, v in self.adapter_aliases.items() if v[0] != name}
        if isinstance(loaded, RemoteModel):
            await loaded.close()
        else:
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
