"""This server's own models as the Ollama API it serves (``api/ollama/``) sees them: names
with tags, load on use, keep_alive. (The *upstream* Ollama's models are another thing:
``ollama_upstream/``, shown by ``/ollama/models``.)

Ollama names are ``model:tag``. Here the tag names a LoRA adapter of a loaded model, and
``latest`` (or no tag) the model as loaded. A model is *available* when it can be loaded by
name: the bundled demo, the configured default, a directory ``<data_dir>/models/<name>``,
or a model this API unloaded earlier (keep_alive 0). Available models load on first use,
as Ollama does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gpt_service.config import DEMO_MODEL_DIR, DEMO_MODEL_NAME, Settings
from gpt_service.errors import InvalidRequest, ModelAlreadyLoaded, ModelNotFound, ServiceError
from gpt_service.services.model_files import ModelFiles, inspect_dir

if TYPE_CHECKING:
    from gpt_service.engine.registry import LoadedModel, ModelRegistry

logger = logging.getLogger(__name__)

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$")
IDLE_POLL_SECONDS = 0.05


@dataclass
class CatalogEntry:
    name: str  # "base:tag" as listed
    base: str
    source: str  # model directory (or hub id)
    files: ModelFiles | None
    loaded: LoadedModel | None = None
    adapter_dir: str | None = None  # a non-default adapter, for "base:adapter" entries


@dataclass(frozen=True)
class Source:
    model_path: str
    lora_adapter: str | None = None


class LocalCatalog:
    def __init__(self, registry: ModelRegistry, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings
        self._unloaded: dict[str, Source] = {}  # models this API unloaded: reloadable by name
        self._unloads: dict[str, asyncio.Task[None]] = {}

    # ---- names ------------------------------------------------------------------------
    def split(self, name: str) -> tuple[str, str | None]:
        """``"demo:latest"`` -> ``("demo", None)``; ``"demo:my-lora"`` -> ``("demo", "my-lora")``."""
        base, _, tag = name.strip().partition(":")
        if not base:
            raise InvalidRequest("model is required")
        loaded = self.registry.models.get(base)
        if tag == "latest" and not (loaded and "latest" in loaded.adapters):
            tag = ""
        return base, tag or None

    def local_name(self, name: str) -> str:
        """The name ``ModelRegistry.resolve`` understands."""
        base, tag = self.split(name)
        return f"{base}:{tag}" if tag else base

    # ---- availability -----------------------------------------------------------------
    def _available(self) -> dict[str, Source]:
        found: dict[str, Source] = {}
        models_dir = self.settings.models_dir
        if models_dir.is_dir():
            for child in sorted(models_dir.iterdir()):
                if NAME.match(child.name) and (child / "config.json").is_file():
                    found[child.name] = Source(f"models/{child.name}")
        found.update(self._unloaded)
        if (DEMO_MODEL_DIR / "config.json").is_file():
            found[DEMO_MODEL_NAME] = Source(DEMO_MODEL_NAME)
        default = self.settings.default_model
        if default and self.settings.default_model_path:
            found[default] = Source(self.settings.default_model_path)
        return found

    def _files(self, model_path: str) -> tuple[str, ModelFiles | None]:
        try:
            source = self.registry.resolve_source(model_path)
        except ServiceError:
            return model_path, None
        return source, inspect_dir(Path(source)) if Path(source).is_dir() else None

    def entries(self) -> list[CatalogEntry]:
        """Loaded models (and their adapters as tags), then the available ones."""
        out: list[CatalogEntry] = []
        for base, loaded in self.registry.models.items():
            files = self._files(loaded.source)[1]
            out.append(CatalogEntry(f"{base}:latest", base, loaded.source, files, loaded))
            for adapter, adapter_dir in loaded.adapters.items():
                if adapter != loaded.default_adapter:
                    out.append(
                        CatalogEntry(
                            f"{base}:{adapter}", base, loaded.source, files, loaded, adapter_dir
                        )
                    )
        for base, src in self._available().items():
            if base not in self.registry.models:
                source, files = self._files(src.model_path)
                if files is not None:
                    out.append(CatalogEntry(f"{base}:latest", base, source, files))
        return out

    def find(self, name: str) -> CatalogEntry:
        base, tag = self.split(name)
        wanted = f"{base}:{tag or 'latest'}"
        for entry in self.entries():
            if entry.name == wanted:
                return entry
        if tag and base in self.registry.models:
            raise ModelNotFound(f"model '{base}' has no adapter '{tag}'")
        raise ModelNotFound(self._missing(name))

    def _missing(self, name: str) -> str:
        return (
            f"model '{name}' not found: load it (POST /models/load) or put a Hugging Face model "
            f"directory at {self.settings.models_dir}/<name>"
        )

    # ---- load on use ------------------------------------------------------------------
    async def ensure_loaded(self, name: str, keep: bool = True) -> float:
        """Load an available model if needed; returns the seconds spent loading."""
        base, _ = self.split(name)
        if keep:
            self._cancel_unload(base)
        if base in self.registry.models:
            return 0.0
        src = self._available().get(base)
        if src is None:
            raise ModelNotFound(self._missing(name))
        start = time.perf_counter()
        load = self.registry.load(base, src.model_path, src.lora_adapter)
        # Shielded: a client hanging up must not abandon a load halfway. AlreadyLoaded: a
        # concurrent request loaded it first.
        with contextlib.suppress(ModelAlreadyLoaded):
            await asyncio.shield(load)
        self._unloaded.pop(base, None)
        return time.perf_counter() - start

    def is_available(self, name: str) -> bool:
        base, _ = self.split(name)
        return base in self.registry.models or base in self._available()

    # ---- keep_alive: 0 ----------------------------------------------------------------
    def schedule_unload(self, name: str) -> asyncio.Task[None]:
        """Unload once no request uses the model (requests of other clients are never cut
        off); the returned task finishes when it is unloaded."""
        base, _ = self.split(name)
        task = self._unloads.get(base)
        if task is None or task.done():
            task = asyncio.create_task(self._unload_when_idle(base), name=f"unload-{base}")
            self._unloads[base] = task
        return task

    async def unload_after_use(self, name: str, wait: float = 2.0) -> None:
        """Schedule the unload and wait up to ``wait`` s for it (then it goes on alone)."""
        task = self.schedule_unload(name)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), wait)

    def _cancel_unload(self, base: str) -> None:
        task = self._unloads.pop(base, None)
        if task is not None and not task.done():
            task.cancel()

    async def _unload_when_idle(self, base: str) -> None:
        while True:
            loaded = self.registry.models.get(base)
            if loaded is None or loaded.is_remote:
                return  # a remote engine's memory is the upstream's business: kept registered
            if loaded.num_running + loaded.num_waiting == 0:
                break
            await asyncio.sleep(IDLE_POLL_SECONDS)
        self._unloaded[base] = Source(loaded.source, loaded.info.lora_adapter)
        try:
            await asyncio.shield(self.registry.unload(base))
            logger.info("unloaded model %s (keep_alive 0)", base)
        except ServiceError as exc:
            logger.info("model %s was not unloaded: %s", base, exc.message)

    async def unload_now(self, name: str) -> None:
        """``keep_alive: 0`` with no prompt: unload when idle, and wait for it."""
        base, _ = self.split(name)
        if base not in self.registry.models:
            raise ModelNotFound(self._missing(name))
        await self.unload_after_use(name, wait=self.settings.shutdown_grace_seconds)
