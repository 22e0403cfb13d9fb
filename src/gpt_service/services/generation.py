"""Generation as every API needs it: pick the model (or Ollama), prepare, stream or complete.

The model is local or remote; either prepares its own request (token ids for the local
engine, text or messages for a remote engine) and yields the same deltas.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from gpt_service.engine.types import Completion, SamplingParams, StreamDelta
from gpt_service.errors import InvalidRequest, Unavailable
from gpt_service.services.structured import ToolPlan, prepare_messages

if TYPE_CHECKING:
    from gpt_service.engine.registry import ModelRegistry, ServedModel


class GenerationBackend(Protocol):
    """Something other than the local engine that can generate (the Ollama proxy)."""

    async def complete(self, job: GenerationJob) -> Completion: ...

    def stream(self, job: GenerationJob) -> AsyncIterator[StreamDelta]: ...


@dataclass
class GenerationJob:
    params: SamplingParams
    model_name: str | None = None
    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    tool_plan: ToolPlan | None = None  # chat with tools: rendered, parsed (or forced)
    prompt_ids: list[int] | None = None
    use_ollama: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Prepared:
    model: ServedModel
    adapter: str | None
    request: Any  # what the model's backend takes: token ids (local) or a RemoteRequest

    @property
    def display_name(self) -> str:
        if self.adapter and self.adapter != self.model.default_adapter:
            return f"{self.model.name}:{self.adapter}"
        return self.model.name


class GenerationService:
    def __init__(
        self,
        registry: ModelRegistry,
        max_tokens_cap: int,
        ollama: GenerationBackend | None = None,
        observer: Any = None,
    ) -> None:
        self.registry = registry
        self.max_tokens_cap = max_tokens_cap
        self.ollama = ollama
        self.observer = observer  # metrics hook: .on_completion(model, completion)

    def prepare(self, job: GenerationJob) -> Prepared:
        self._check_params(job.params)
        model, adapter = self.registry.resolve(job.model_name)
        prompt_ids = None if job.prompt_ids is None else check_token_ids(job.prompt_ids, model)
        if job.messages is None and prompt_ids is None and not (job.prompt or "").strip():
            raise InvalidRequest("prompt must not be empty")  # for every backend
        messages, tools = job.messages, None
        if messages is not None:
            # A local model renders tools with its own template (and we parse its format); a
            # remote engine gets the OpenAI definitions as they are.
            tokenizer = getattr(model, "tokenizer", None)
            if tokenizer is not None:
                template = getattr(tokenizer, "chat_template", None)
                messages, tools = prepare_messages(messages, job.tool_plan, template)
            elif job.tool_plan is not None:
                tools = job.tool_plan.template_tools()
        request = model.prepare(job.prompt, messages, prompt_ids, tools)
        return Prepared(model, adapter, request)

    async def prepare_checked(self, job: GenerationJob) -> Prepared:
        """``prepare``, plus the structured-output grammar compiled (cached) off the event
        loop, so a schema the grammar library refuses is a 400 before anything is queued."""
        prepared = self.prepare(job)
        if job.params.constraint is not None:
            await prepared.model.check_constraint(job.params.constraint)
        return prepared

    def _check_params(self, params: SamplingParams) -> None:
        if params.max_tokens > self.max_tokens_cap:
            raise InvalidRequest(
                f"max_tokens {params.max_tokens} exceeds this server's cap of {self.max_tokens_cap}"
            )
        try:
            params.validate()
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from exc

    def _check_ollama(self, job: GenerationJob) -> None:
        self._check_params(job.params)
        if job.params.constraint is not None or job.tool_plan is not None:
            raise InvalidRequest(
                "response_format and tools are not supported with use_ollama (local models only)"
            )

    def _backend(self) -> GenerationBackend:
        if self.ollama is None:
            raise Unavailable("use_ollama is set but no Ollama upstream is configured")
        return self.ollama

    async def complete(self, job: GenerationJob) -> tuple[Completion, str]:
        """Run to the end; returns the completion and the model name that served it."""
        if job.use_ollama:
            self._check_ollama(job)
            return await self._backend().complete(job), job.model_name or ""
        return await self._run(await self.prepare_checked(job), job)

    async def _run(self, prepared: Prepared, job: GenerationJob) -> tuple[Completion, str]:
        completion = await prepared.model.generate(prepared.request, job.params, prepared.adapter)
        self._observe(prepared.model.name, completion)
        return completion, prepared.display_name

    async def complete_many(self, jobs: list[GenerationJob]) -> list[tuple[Completion, str]]:
        """Validate every job first (one bad prompt rejects the whole call before any work),
        then submit them all at once so the engine batches them."""
        if any(job.use_ollama for job in jobs):
            return list(await asyncio.gather(*(self.complete(job) for job in jobs)))
        prepared = [await self.prepare_checked(job) for job in jobs]
        return list(
            await asyncio.gather(*(self._run(p, j) for p, j in zip(prepared, jobs, strict=True)))
        )

    async def open_stream(self, job: GenerationJob) -> tuple[AsyncIterator[StreamDelta], str]:
        """Validate and submit now (so errors get a status code), stream later."""
        if job.use_ollama:
            self._check_ollama(job)
            stream = self._backend().stream(job)
            # Reach the upstream before answering, so it being down or not knowing the model
            # is a 503/404 status rather than an error event inside a 200 stream.
            first = await anext(stream)
            return _prepend(first, stream), job.model_name or ""
        prepared = await self.prepare_checked(job)
        stream = await prepared.model.open_stream(prepared.request, job.params, prepared.adapter)
        return self._observed(prepared.model.name, stream), prepared.display_name

    async def _observed(
        self, model: str, stream: AsyncIterator[StreamDelta]
    ) -> AsyncIterator[StreamDelta]:
        start = time.perf_counter()
        first: float | None = None
        is_final = False
        try:
            async for delta in stream:
                if first is None and (delta.token_ids or delta.text):
                    first = time.perf_counter() - start
                if delta.is_final:
                    is_final = True
                    self._stream_end(model, delta, first, start)
                yield delta
        finally:
            if not is_final:  # the client left: a cancelled generation
                self._stream_end(model, StreamDelta(finish_reason="cancelled"), first, start)
            cancel = getattr(stream, "cancel", None)
            if cancel is not None:
                cancel()  # the client went away: free the engine slot now
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()  # a remote stream: close the upstream response now

    def _stream_end(
        self, model: str, final: StreamDelta, first: float | None, start: float
    ) -> None:
        if self.observer is not None:
            self.observer.on_stream_end(model, final, first, time.perf_counter() - start)

    def _observe(self, model: str, completion: Completion) -> None:
        if self.observer is not None:
            self.observer.on_completion(model, completion)


def vocabulary_size(model: ServedModel) -> int | None:
    """Ids the model can embed: the tokenizer's and the embedding matrix's sizes, the smaller."""
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        return None
    size = len(tokenizer)
    config = getattr(getattr(model, "model", None), "config", None)
    embedded = getattr(config, "vocab_size", None)
    return min(size, embedded) if isinstance(embedded, int) and embedded > 0 else size


def check_token_ids(ids: list[int], model: ServedModel) -> list[int]:
    """Token ids given by a client (OpenAI prompt ids, Ollama context): an id outside the
    vocabulary would fail the engine step shared with other requests, so it is a 400."""
    size = vocabulary_size(model)
    if size is None:
        return ids
    bad = next((t for t in ids if not 0 <= t < size), None)
    if bad is not None:
        raise InvalidRequest(
            f"token id {bad} is outside the vocabulary of model '{model.name}' (0..{size - 1})"
        )
    return ids


async def _prepend(
    first: StreamDelta, rest: AsyncIterator[StreamDelta]
) -> AsyncIterator[StreamDelta]:
    yield first
    if not first.is_final:
        async for delta in rest:
            yield delta
