"""Generation as every API needs it: prepare the request once (``preparation.py``), then
run it to the end or stream it, on the served model or the upstream Ollama (``use_ollama``).

The model is local or remote; either takes its prepared request (token ids for the local
engine, text or messages for a remote engine) and yields the same deltas.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from gpt_service.engine.types import Completion, SamplingParams, StreamDelta
from gpt_service.errors import InvalidRequest, Unavailable
from gpt_service.services.preparation import (
    GenerationJob,
    Prepared,
    check_inputs,
    render,
    served_name,
    tokenizes_here,
)

if TYPE_CHECKING:
    from gpt_service.engine.registry import ModelRegistry, ServedModel


class GenerationBackend(Protocol):
    """Something other than the local engine that can generate (the Ollama proxy)."""

    async def complete(self, job: GenerationJob) -> Completion: ...

    def stream(self, job: GenerationJob) -> AsyncIterator[StreamDelta]: ...


@dataclass
class OpenStream:
    """A submitted generation: its deltas, the model name to answer with, and the token ids
    the local engine was given (None for a remote engine or the Ollama upstream)."""

    deltas: AsyncIterator[StreamDelta]
    model_name: str
    prompt_ids: list[int] | None = None


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

    def resolve(self, job: GenerationJob) -> tuple[ServedModel, str | None]:
        """The checks that need no tokenizer: sampling, the model and adapter, the inputs."""
        self._check_params(job.params)
        model, adapter = self.registry.resolve(job.model_name)
        check_inputs(job, model)
        return model, adapter

    def served_name(self, job: GenerationJob) -> str:
        """The name answers for ``job`` will carry ("name" or "name:adapter"); raises the
        404/400 a generation would."""
        return served_name(*self.resolve(job))

    async def prepare(self, job: GenerationJob) -> Prepared:
        """Checked and rendered (templating and tokenizing in a thread), plus the
        structured-output grammar compiled (cached) off the event loop, so a schema the
        grammar library refuses is a 400 before anything is queued."""
        model, adapter = self.resolve(job)
        if tokenizes_here(model):
            request = await asyncio.to_thread(render, job, model)
        else:
            request = render(job, model)
        if job.params.constraint is not None:
            await model.check_constraint(job.params.constraint)
        return Prepared(model, adapter, served_name(model, adapter), request)

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
        return await self._run(await self.prepare(job), job)

    async def _run(self, prepared: Prepared, job: GenerationJob) -> tuple[Completion, str]:
        completion = await prepared.model.generate(prepared.request, job.params, prepared.adapter)
        self._observe(prepared.model.name, completion)
        return completion, prepared.model_name

    async def complete_many(self, jobs: list[GenerationJob]) -> list[tuple[Completion, str]]:
        """Validate every job first (one bad prompt rejects the whole call before any work),
        then submit them all at once so the engine batches them; the first failure cancels
        the rest. (Calls to the Ollama upstream each run to their end: it counts them.)"""
        if any(job.use_ollama for job in jobs):
            return list(await asyncio.gather(*(self.complete(job) for job in jobs)))
        prepared = [await self.prepare(job) for job in jobs]
        return await _all([self._run(p, j) for p, j in zip(prepared, jobs, strict=True)])

    async def open_stream(self, job: GenerationJob) -> OpenStream:
        """Validate and submit now (so errors get a status code), stream later."""
        if job.use_ollama:
            self._check_ollama(job)
            stream = self._backend().stream(job)
            # Reach the upstream before answering, so it being down or not knowing the model
            # is a 503/404 status rather than an error event inside a 200 stream.
            first = await anext(stream)
            return OpenStream(_prepend(first, stream), job.model_name or "")
        prepared = await self.prepare(job)
        model = prepared.model
        stream = await model.open_stream(prepared.request, job.params, prepared.adapter)
        deltas = self._observed(model.name, stream)
        return OpenStream(deltas, prepared.model_name, prepared.prompt_ids)

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


async def _all(
    calls: list[Coroutine[Any, Any, tuple[Completion, str]]],
) -> list[tuple[Completion, str]]:
    """Run together; the first failure cancels the others and is raised as it is."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(call) for call in calls]
    except BaseExceptionGroup as errors:
        first: BaseException = errors
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return [task.result() for task in tasks]


async def _prepend(
    first: StreamDelta, rest: AsyncIterator[StreamDelta]
) -> AsyncIterator[StreamDelta]:
    yield first
    if not first.is_final:
        async for delta in rest:
            yield delta
