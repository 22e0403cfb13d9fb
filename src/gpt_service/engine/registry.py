"""The served models, the current one, and their adapters.

A model is served by a backend: the local batching engine (``LoadedModel``) or a remote
OpenAI-compatible engine (``RemoteModel``). Both answer ``prepare`` / ``generate`` /
``open_stream`` with the same deltas, so callers never ask which one they hold; the registry
alone decides which to build.

Registering never holds a lock across network I/O or a model load: a name is reserved
(``loading``, counted against ``limits.max_loaded_models``), the slow part runs, then the
model is committed. Reserve and commit run on the event loop without awaiting, so they are
atomic; only local loads queue behind each other (the memory check counts on it).
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import replace
from pathlib import Path

from gpt_service.config import DEMO_MODEL_DIR, DEMO_MODEL_NAME, Settings
from gpt_service.engine import loader
from gpt_service.engine.loaded import LoadedModel, check_memory, default_adapter_name, load_local
from gpt_service.engine.types import ModelInfo
from gpt_service.errors import Conflict, InvalidRequest, ModelAlreadyLoaded, ModelNotFound
from gpt_service.paths import looks_like_hub_id, path_errors, resolve_inside
from gpt_service.remote.model import RemoteModel, RemoteSpec, connect
from gpt_service.remote.pool import ReplicaPool, redact_url
from gpt_service.remote.settings import check_allowed, check_urls, configured_specs

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$")


ServedModel = LoadedModel | RemoteModel


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise InvalidRequest("model_name must be 1-128 letters, digits, '.', '_' or '-'")


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
        self.loading: set[str] = set()  # names reserved by a load or registration in flight
        self._adapters_pending: set[tuple[str, str]] = set()  # (model, adapter) being added
        self._local_load = asyncio.Lock()  # one local load at a time (the memory check)
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

    def _reserve(self, name: str) -> None:
        """Claim ``name`` for a load in flight (no await: atomic on the event loop)."""
        _check_name(name)
        if name in self.models:
            raise ModelAlreadyLoaded(f"model '{name}' is already loaded; unload it first")
        if name in self.loading:
            raise ModelAlreadyLoaded(f"model '{name}' is being loaded")
        count = len(self.models) + len(self.loading)
        if count >= self.settings.limits.max_loaded_models:
            raise Conflict(
                f"{count} models are loaded or loading (the limit, "
                "GPT_SERVICE_LIMITS__MAX_LOADED_MODELS); unload one first"
            )
        self.loading.add(name)

    def _commit(self, model: ServedModel) -> None:
        self.loading.discard(model.name)
        self.models[model.name] = model
        if self.current is None:
            self.current = model.name

    async def load(
        self,
        name: str,
        model_path: str | None = None,
        lora_adapter: str | None = None,
        quantization: str | None = None,
    ) -> ModelInfo:
        self._reserve(name)
        try:
            async with self._local_load:
                source = self.resolve_source(model_path or name)
                adapter_dir = self.resolve_adapter_dir(lora_adapter) if lora_adapter else None
                check_memory(source, self.settings.limits.min_free_memory_mb)
                loaded = await loader.on_own_thread(  # its OpenMP team goes with it
                    load_local,
                    self.settings,
                    name,
                    source,
                    adapter_dir,
                    self.num_threads,
                    quantization,
                )
        except BaseException:
            self.loading.discard(name)
            raise
        self._commit(loaded)
        logger.info("loaded model %s from %s", name, source)
        return loaded.info

    async def load_remote(self, spec: RemoteSpec, trusted: bool = False) -> ModelInfo:
        """Register a model served by a remote OpenAI-compatible engine (one URL per replica).

        ``trusted``: listed in settings (always allowed, and an upstream still down at
        start-up is probed until it answers); otherwise every URL must match an allowed prefix.
        """
        _check_name(spec.name)
        spec.base_urls = check_urls(spec.base_urls)
        if not trusted:
            check_allowed(spec.base_urls, self.settings.remote)
        if spec.weights_path:
            spec.weights_path = self.resolve_source(spec.weights_path)
        self._reserve(spec.name)
        r = self.settings.remote
        try:
            pool = ReplicaPool(
                spec.base_urls,
                spec.api_key,
                r.read_timeout_seconds,
                r.connect_timeout_seconds,
                r.probe_interval_seconds,
            )
            model = await connect(spec, pool, require_up=not trusted)
        except BaseException:
            self.loading.discard(spec.name)
            raise
        self._commit(model)
        shown = ", ".join(redact_url(u) for u in spec.base_urls)
        logger.info("registered remote model %s (%s)", spec.name, shown)
        return model.info

    async def load_configured_remotes(self) -> None:
        """The remote models listed in settings; one that fails is logged, not fatal."""
        for spec in configured_specs(self.settings.remote):
            try:
                await self.load_remote(spec, trusted=True)
            except Exception:
                logger.exception("could not register the remote model '%s'", spec.name)

    async def add_adapter(
        self, name: str, adapter_path: str, adapter_name: str | None = None
    ) -> str:
        """Load one more LoRA adapter onto a loaded model, for per-request use. The adapter's
        name is reserved while it attaches (or registers upstream): no lock is held."""
        loaded = self.get(name)
        adapter_dir = self.resolve_adapter_dir(adapter_path)
        key = adapter_name or default_adapter_name(adapter_dir)
        if key in loaded.adapters or (name, key) in self._adapters_pending:
            raise ModelAlreadyLoaded(f"model '{name}' already has an adapter '{key}'")
        self._adapters_pending.add((name, key))
        try:
            if isinstance(loaded, RemoteModel):  # registered on the upstream (shared storage)
                return await loaded.add_adapter(str(adapter_dir), key)
            await self._attach(loaded, adapter_dir, key)
            return key
        finally:
            self._adapters_pending.discard((name, key))

    @staticmethod
    async def _attach(loaded: LoadedModel, adapter_dir: Path, key: str) -> None:
        def attach() -> None:
            loaded.model = loader.attach_adapter(loaded.model, adapter_dir, key)
            loaded.engine.runner.set_model(loaded.model)

        await loaded.engine.run_between_steps(attach)
        loaded.adapters[key] = str(adapter_dir)
        loaded.info.adapters = list(loaded.adapters)

    async def load_lora(self, lora_name: str, lora_path: str, base: str | None = None) -> str:
        """vLLM's runtime LoRA load: the adapter goes onto ``base`` (default: the current
        model) and is also addressable by its own name, as vLLM serves it."""
        taken = {*self.models, *self.loading, *self.adapter_aliases}
        if lora_name in taken or any(key == lora_name for _, key in self._adapters_pending):
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
