"""``RemoteModel``: a model the registry holds like a local one, served by a remote engine.

It answers the same calls as a local ``LoadedModel`` (``prepare``, ``generate``,
``open_stream``, adapters, load figures), so ``services/`` and the API dialects never ask
which kind they hold. Raw prompts go to the upstream's ``/completions``, messages to its
``/chat/completions`` (the upstream applies its own chat template).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from gpt_service.engine.types import (
    Completion,
    Constraint,
    ModelInfo,
    SamplingParams,
    StreamDelta,
)
from gpt_service.errors import (
    InvalidRequest,
    ModelAlreadyLoaded,
    ModelNotFound,
    ServiceError,
    Unavailable,
    UpstreamError,
)
from gpt_service.remote.failures import describe
from gpt_service.remote.pool import Replica, ReplicaPool, redact_url, upstream_message
from gpt_service.remote.wire import RemoteRequest, StreamState, completion_of, request_body

logger = logging.getLogger(__name__)

BACKEND = "openai"


@dataclass
class RemoteSpec:
    name: str
    base_urls: list[str]
    remote_model: str
    api_key: str | None = None
    weights_path: str | None = None  # a local copy of the upstream's weights (for training)


@dataclass
class RemoteModel:
    spec: RemoteSpec
    pool: ReplicaPool
    info: ModelInfo
    default_adapter: str | None = None
    adapters: dict[str, str] = field(default_factory=dict)  # adapter name -> directory
    backend: str = BACKEND
    is_remote: bool = True
    tokenizer: Any = None  # the upstream tokenizes

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def source(self) -> str:
        return self.spec.weights_path or self.pool.replicas[0].url

    @property
    def num_running(self) -> int:
        return sum(r.outstanding for r in self.pool.replicas)

    @property
    def num_waiting(self) -> int:
        return 0  # the upstream queues; it does not say how many

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "remote_model": self.spec.remote_model,
            "replicas": [r.describe() for r in self.pool.replicas],
            "healthy": self.pool.num_up > 0,
        }

    def resolve_adapter(self, adapter: str | None) -> str | None:
        if adapter is None:
            return self.default_adapter
        if adapter not in self.adapters:
            raise ModelNotFound(f"model '{self.name}' has no adapter '{adapter}'")
        return adapter

    # ---- generation ---------------------------------------------------------------------
    def prepare(
        self,
        prompt: str | None = None,
        messages: list[dict[str, Any]] | None = None,
        prompt_ids: list[int] | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> RemoteRequest:
        return RemoteRequest(prompt, messages, prompt_ids, tools)

    async def check_constraint(self, constraint: Constraint) -> None:
        """JSON schemas go upstream as ``response_format``; grammars have no OpenAI field."""
        if constraint.kind != "json_schema":
            raise InvalidRequest(
                f"a '{constraint.kind}' grammar cannot be sent to a remote engine; "
                "use a JSON schema (response_format)"
            )

    def _model_field(self, adapter: str | None) -> str:
        # vLLM serves a runtime LoRA adapter under its own model id (its ``lora_name``).
        return adapter or self.spec.remote_model

    async def generate(
        self, request: RemoteRequest, params: SamplingParams, adapter: str | None = None
    ) -> Completion:
        start = time.perf_counter()
        body = request_body(request, self._model_field(adapter), params, stream=False)
        data = await self.pool.post_json(request.path, body)
        if not isinstance(data, dict):
            raise UpstreamError("the remote engine answered with an unexpected JSON value")
        return completion_of(data, time.perf_counter() - start)

    async def open_stream(
        self, request: RemoteRequest, params: SamplingParams, adapter: str | None = None
    ) -> AsyncIterator[StreamDelta]:
        """Connect and read up to the first delta now (so a down upstream or an unknown model
        is a 503/404 status, not an error event in a 200 stream), relay the rest as it comes.
        Closing the returned iterator closes the upstream response."""
        body = request_body(request, self._model_field(adapter), params, stream=True)
        response = await self.pool.send("POST", request.path, body)
        deltas = self._deltas(response)
        try:
            first = await anext(deltas)
        except BaseException:
            await deltas.aclose()
            raise
        return _prepend(first, deltas)

    async def _deltas(self, response: Any) -> AsyncIterator[StreamDelta]:
        state = StreamState()
        is_done = False
        try:
            async for part in self.pool.sse(response):
                delta = state.delta(part)
                if delta is not None:
                    yield delta
            final = state.final()
            # Released before the last delta: a reader that stops at the final delta need
            # not close the stream for the replica's count to be right.
            is_done = True
            await self.pool.done(response, ok=final.error is None, error=final.error)
            yield final
        except ServiceError as exc:
            if not is_done:
                is_done = True
                await self.pool.done(response, ok=False, error=exc.message)
            if state.chunks == 0:
                raise
            yield StreamDelta(finish_reason="error", error=exc.message)
        finally:
            if not is_done:  # the client left: close the upstream response now
                await self.pool.done(response, ok=True)

    async def embed(self, texts: list[str], adapter: str | None, normalize: bool) -> Embeddings:
        """The upstream's ``/embeddings`` (it decides pooling and normalisation)."""
        body = {"model": self._model_field(adapter), "input": texts}
        data = await self.pool.post_json("/embeddings", body)
        try:
            rows = sorted(data["data"], key=lambda row: row.get("index", 0))
            vectors = [[float(x) for x in row["embedding"]] for row in rows]
        except (KeyError, TypeError, ValueError) as exc:
            raise UpstreamError(f"the remote engine answered embeddings unreadably: {exc}") from exc
        if normalize:
            vectors = [_unit(v) for v in vectors]
        return Embeddings(vectors, int((data.get("usage") or {}).get("prompt_tokens") or 0))

    # ---- adapters (vLLM's runtime LoRA endpoints on the upstream) -------------------------
    async def add_adapter(self, adapter_dir: str, key: str) -> str:
        if key in self.adapters:
            raise ModelAlreadyLoaded(f"model '{self.name}' already has an adapter '{key}'")
        results = await self.pool.post_each(
            "/load_lora_adapter", {"lora_name": key, "lora_path": adapter_dir}
        )
        failed = [f"{url}: {error}" for url, error in results if error]
        if len(failed) == len(results):
            raise UpstreamError(
                f"no replica of '{self.name}' registered adapter '{key}' "
                f"(it needs vLLM's runtime LoRA endpoints): {'; '.join(failed)}"
            )
        if failed:
            logger.warning("adapter %s missing on some replicas: %s", key, "; ".join(failed))
        self.adapters[key] = adapter_dir
        self.info.adapters = list(self.adapters)
        return key

    async def restore_adapters(self, replica: Replica) -> None:
        """A replica back from an outage (or a restart) gets every adapter registered here;
        one it refuses is logged and kept in ``replica.last_error``."""
        for key, adapter_dir in list(self.adapters.items()):
            url = f"{replica.base}/load_lora_adapter"
            body = {"lora_name": key, "lora_path": adapter_dir}
            try:
                response = await self.pool.http.post(url, json=body)
            except httpx.HTTPError as exc:
                error: str | None = describe(exc)
            else:
                error = None if response.status_code < 400 else upstream_message(response)
                if error and "already" in error.lower():  # it kept the adapter: fine
                    error = None
            if error:
                replica.last_error = f"adapter '{key}' not registered: {error}"
                logger.warning("replica %s: %s", replica.url, replica.last_error)
            else:
                logger.info("adapter %s registered on %s after its outage", key, replica.url)

    async def remove_adapter(self, key: str) -> None:
        results = await self.pool.post_each("/unload_lora_adapter", {"lora_name": key})
        for url, error in results:
            if error:
                logger.warning("adapter %s not unloaded on %s: %s", key, url, error)
        self.adapters.pop(key, None)
        self.info.adapters = list(self.adapters)

    async def close(self) -> None:
        await self.pool.aclose()


@dataclass
class Embeddings:
    vectors: list[list[float]]
    num_tokens: int


def _unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm else vector


async def _prepend(
    first: StreamDelta, rest: AsyncIterator[StreamDelta]
) -> AsyncIterator[StreamDelta]:
    try:
        yield first
        if not first.is_final:
            async for delta in rest:
                yield delta
    finally:
        await rest.aclose()  # a client that left closes the upstream stream


def new_info(spec: RemoteSpec, context_length: int) -> ModelInfo:
    return ModelInfo(
        name=spec.name,
        path=spec.weights_path or redact_url(spec.base_urls[0]),
        type="remote",
        device="remote",
        dtype="unknown",
        architecture=f"{BACKEND}:{spec.remote_model}",
        num_parameters=0,
        context_length=context_length,
        lora_adapter=None,
        adapters=[],
        loaded_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


async def connect(spec: RemoteSpec, pool: ReplicaPool, require_up: bool) -> RemoteModel:
    """Ask the replicas for their models: the remote model must be one of them (404 if a
    replica answers without it). ``require_up``: no replica answering is a 503.
    A refused registration closes the pool (its HTTP client and connections)."""
    try:
        listed, context_length = await list_models(pool, require_up)
        if listed is not None and spec.remote_model not in listed:
            raise ModelNotFound(
                f"the remote engine has no model '{spec.remote_model}' (it serves: "
                f"{', '.join(sorted(listed)) or 'nothing'})"
            )
    except BaseException:
        await pool.aclose()
        raise
    model = RemoteModel(spec, pool, new_info(spec, context_length))
    pool.on_recover = model.restore_adapters
    pool.start()
    return model


async def list_models(pool: ReplicaPool, require_up: bool) -> tuple[set[str] | None, int]:
    """Model ids of the first replica that answers ``GET /models`` (and vLLM's
    ``max_model_len``); replicas that do not answer are taken out until probed back in."""
    for replica in pool.replicas:
        try:
            response = await pool.http.get(f"{replica.base}/models", timeout=10)
            data = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError) as exc:  # the replica is out until probed back in
            replica.is_up = False
            replica.last_error = f"connect failed: {describe(exc)}"
            continue
        if response.status_code in (401, 403):
            await pool.aclose()
            raise UpstreamError(
                f"remote engine {replica.url} refused the API key: {upstream_message(response)}"
            )
        if not isinstance(data, dict):
            return None, 0  # no usable model list: trust remote_model
        cards = [c for c in (data.get("data") or []) if isinstance(c, dict)]
        ids = {str(c.get("id")) for c in cards}
        lengths = [c["max_model_len"] for c in cards if isinstance(c.get("max_model_len"), int)]
        return ids, max(lengths, default=0)
    if require_up:
        await pool.aclose()
        raise Unavailable(
            "no replica of the remote model answers: "
            + "; ".join(f"{r.url} ({r.last_error})" for r in pool.replicas),
            retry_after=5,
        )
    return None, 0
