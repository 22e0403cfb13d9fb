"""Embeddings as the APIs need them: pick the model (and adapter), cap the input, embed.

Torch-free: the served model embeds (the local engine's pooled hidden states, or the remote
engine's ``/embeddings``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gpt_service.errors import InvalidRequest
from gpt_service.services.preparation import served_name

if TYPE_CHECKING:
    from gpt_service.engine.registry import ModelRegistry


class EmbeddingService:
    def __init__(self, registry: ModelRegistry, max_inputs: int) -> None:
        self.registry = registry
        self.max_inputs = max_inputs

    async def embed(
        self, model_name: str | None, texts: list[str], normalize: bool = True
    ) -> tuple[Any, str]:
        """Vectors for ``texts`` and the name of the model ("name" or "name:adapter")."""
        if len(texts) > self.max_inputs:
            raise InvalidRequest(
                f"input: {len(texts)} inputs exceed this server's cap of {self.max_inputs}"
            )
        model, adapter = self.registry.resolve(model_name)
        output = await model.embed(texts, adapter, normalize)
        return output, served_name(model, adapter)
