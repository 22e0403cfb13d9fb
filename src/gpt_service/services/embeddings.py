"""Embeddings as the APIs need them: pick the model (and adapter), cap the input, embed.

Torch-free: the tensor work (``engine.embeddings.embed``) is handed in by the app lifespan.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from gpt_service.errors import InvalidRequest

if TYPE_CHECKING:
    from gpt_service.engine.embeddings import EmbeddingOutput
    from gpt_service.engine.registry import LoadedModel, ModelRegistry

EmbedFn = Callable[["LoadedModel", list[str], str | None, bool], Awaitable["EmbeddingOutput"]]


class EmbeddingService:
    def __init__(self, registry: ModelRegistry, embed: EmbedFn, max_inputs: int) -> None:
        self.registry = registry
        self._embed = embed
        self.max_inputs = max_inputs

    async def embed(
        self, model_name: str | None, texts: list[str], normalize: bool = True
    ) -> tuple[EmbeddingOutput, str]:
        """Vectors for ``texts`` and the name of the model ("name" or "name:adapter")."""
        if len(texts) > self.max_inputs:
            raise InvalidRequest(
                f"input: {len(texts)} inputs exceed this server's cap of {self.max_inputs}"
            )
        model, adapter = self.registry.resolve(model_name)
        output = await self._embed(model, texts, adapter, normalize)
        name = model.name
        if adapter and adapter != model.default_adapter:
            name = f"{model.name}:{adapter}"
        return output, name
