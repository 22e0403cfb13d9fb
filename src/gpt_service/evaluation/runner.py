"""``EvaluationManager``: evaluations as store rows, run as asyncio tasks in the server process.

An evaluation is validated completely before its row exists (metrics, data, model, sampling
parameters), then runs in the background: every sample's generation goes to the model's
batching engine concurrently (bounded so other traffic still finds room in the queue), the
text metrics are computed from the predictions, and perplexity runs on the engine thread.
Progress is written to the store as it goes; the result (scores and per-sample rows) is one
JSON document in the row, so it survives restarts like a training job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpt_service.config import DEMO_DATA_DIR, Settings
from gpt_service.errors import (
    EngineOverloaded,
    GenerationFailed,
    InvalidRequest,
    NotFound,
    ServiceError,
)
from gpt_service.evaluation.results import SampleOutput, build_result
from gpt_service.evaluation.samples import Sample, load_samples
from gpt_service.evaluation.scoring import (
    add_perplexity,
    add_unavailable,
    model_perplexity,
    text_scores,
)
from gpt_service.evaluation.spec import (
    EVAL,
    NOT_RESUMABLE,
    EvalProgress,
    EvalRecord,
    EvalRequest,
)
from gpt_service.remote.perplexity import PerplexityUnavailable
from gpt_service.services.generation import GenerationService
from gpt_service.services.preparation import GenerationJob
from gpt_service.store.jobs import JobStore
from gpt_service.store.leases import LeaseKeeper
from gpt_service.store.records import ACTIVE, JobNotFound, JobStatus, now_iso

if TYPE_CHECKING:
    from gpt_service.engine.registry import ModelRegistry

logger = logging.getLogger(__name__)

MAX_OVERLOAD_RETRIES = 600  # ~10 minutes of a queue kept full by other traffic


class EvaluationNotFound(NotFound):
    pass


class _Progress:
    """Writes progress to the store at most every ``interval`` seconds (and at phase ends)."""

    def __init__(self, store: JobStore, eval_id: str, total: int, with_perplexity: bool) -> None:
        self.store, self.eval_id, self.total = store, eval_id, total
        self.total_steps = total * (2 if with_perplexity else 1)
        self.state: dict[str, Any] = {"samples_done": 0, "total_samples": total}
        self._last = 0.0

    def set(self, force: bool = False, **fields: Any) -> None:
        self.state.update(fields)
        now = time.monotonic()
        if not force and now - self._last < 0.5:
            return
        self._last = now
        steps = self.state["samples_done"] + self.state.get("perplexity_done", 0)
        progress = round(100.0 * steps / self.total_steps, 1) if self.total_steps else 0.0
        self.store.update(self.eval_id, progress=EvalProgress(**self.state, progress=progress))


class EvaluationManager:
    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        registry: ModelRegistry,
        generation: GenerationService,
        leases: LeaseKeeper,
        dataset_roots: Iterable[Path] = (),
        max_concurrent: int = 1,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.generation = generation
        self.leases = leases
        self.dataset_roots = [settings.datasets_dir, DEMO_DATA_DIR, *dataset_roots]
        engine = settings.engine
        # Enough in flight to keep the batch full, while leaving half the queue to others.
        self.max_in_flight = max(1, min(2 * engine.max_running, engine.max_waiting // 2))
        self._slots = asyncio.Semaphore(max_concurrent)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._is_started = False

    # ---- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        """Evaluations run in their replica's process, under its lease: those of a replica
        that is gone become ``interrupted`` (the lease keeper's sweep)."""
        self._is_started = True

    async def stop(self) -> None:
        """Shutdown: running evaluations become ``interrupted`` (their task records it)."""
        self._is_started = False
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def is_alive(self) -> bool:
        return self._is_started

    # ---- requests --------------------------------------------------------------------
    async def submit(self, request: EvalRequest) -> EvalRecord:
        """Validate everything, store a ``queued`` row and start the run in the background."""
        model_name = self._check_model(request)
        samples = await asyncio.to_thread(
            load_samples, request, self.settings.data_dir, self.dataset_roots
        )
        record = await asyncio.to_thread(
            self.store.create,
            EVAL,
            request.stored_params(model_name, len(samples)),
            EvalProgress(total_samples=len(samples)),
            owner=self.leases.owner,
            lease_seconds=self.leases.lease_seconds,
        )
        task = asyncio.create_task(self._run(record.id, model_name, request, samples))
        self._tasks[record.id] = task
        self.leases.hold(record.id, self._lost)
        task.add_done_callback(lambda _: self._forget(record.id))
        logger.info("evaluation %s of %s queued (%d samples)", record.id, model_name, len(samples))
        return await self.get(record.id)

    def _forget(self, eval_id: str) -> None:
        self._tasks.pop(eval_id, None)
        self.leases.release(eval_id)

    def _lost(self, eval_id: str) -> None:
        """The lease keeper (a thread) found the row taken from us: stop the run."""
        task = self._tasks.get(eval_id)
        if task is not None:
            task.get_loop().call_soon_threadsafe(task.cancel)

    def _check_model(self, request: EvalRequest) -> str:
        """The served name ('model' or 'model:adapter'); raises 404/400 like a generation."""
        probe = GenerationJob(request.sampling(), request.model_name, prompt="probe")
        return self.generation.served_name(probe)

    async def wait(self, eval_id: str) -> EvalRecord:
        task = self._tasks.get(eval_id)
        if task is not None:
            await asyncio.shield(task)  # a client hanging up does not stop the evaluation
        return await self.get(eval_id)

    async def get(self, eval_id: str) -> EvalRecord:
        """Store calls block (file locks, round trips): in a thread, never on the loop."""
        try:
            return await asyncio.to_thread(self.store.get, eval_id, EVAL)
        except JobNotFound:
            raise EvaluationNotFound(f"no evaluation with id '{eval_id}'") from None

    async def list(
        self, status: str | None = None, limit: int = 20, offset: int = 0
    ) -> tuple[list[EvalRecord], int]:
        return await asyncio.to_thread(self.store.list, EVAL, status, limit, offset)

    # ---- the run ---------------------------------------------------------------------
    async def _run(
        self, eval_id: str, model_name: str, request: EvalRequest, samples: list[Sample]
    ) -> None:
        try:
            async with self._slots:
                await asyncio.to_thread(
                    self.store.update,
                    eval_id,
                    only_if=ACTIVE,
                    status=JobStatus.RUNNING,
                    started_at=now_iso(),
                )
                result = await self._evaluate(eval_id, model_name, request, samples)
            await asyncio.to_thread(
                self.store.update,
                eval_id,
                only_if=ACTIVE,
                status=JobStatus.COMPLETED,
                result=result,
                finished_at=now_iso(),
            )
            logger.info("evaluation %s completed: %s", eval_id, result["scores"])
        except asyncio.CancelledError:
            self._finish(eval_id, f"the server stopped during the run; {NOT_RESUMABLE}")
            raise
        except ServiceError as exc:
            self._finish(eval_id, exc.message)
        except Exception as exc:  # one broken evaluation must not take the manager down
            logger.exception("evaluation %s failed", eval_id)
            self._finish(eval_id, f"{type(exc).__name__}: {exc}")

    def _finish(self, eval_id: str, error: str) -> None:
        """An evaluation that did not complete fails with the reason (it never resumes)."""
        logger.warning("evaluation %s failed: %s", eval_id, error)
        self.store.update(
            eval_id, only_if=ACTIVE, status=JobStatus.FAILED, error=error, finished_at=now_iso()
        )

    async def _evaluate(
        self, eval_id: str, model_name: str, request: EvalRequest, samples: list[Sample]
    ) -> dict[str, Any]:
        with_ppl = "perplexity" in request.metrics
        progress = _Progress(self.store, eval_id, len(samples), with_ppl)
        progress.set(force=True, phase="generating")
        outputs, seconds = await self._generate_all(model_name, request, samples, progress)
        progress.set(force=True, phase="scoring")
        predictions = [o.prediction for o in outputs]
        references = [s.expected for s in samples]
        scores = await asyncio.to_thread(
            text_scores, request.text_metrics, predictions, references, request.metric_options()
        )
        if with_ppl:
            progress.set(force=True, phase="perplexity")
            loaded, adapter = self.registry.resolve(model_name)
            try:
                totals = await model_perplexity(
                    loaded,
                    adapter,
                    samples,
                    request.use_chat_template,
                    lambda n: progress.set(perplexity_done=n),
                )
            except PerplexityUnavailable as exc:  # a remote engine without prompt logprobs
                add_unavailable(scores, str(exc), len(samples))
            else:
                prompt_format = "chat_template" if request.use_chat_template else "raw"
                add_perplexity(scores, totals, prompt_format)
        # Report the metrics in the order they were asked for.
        scores.aggregate = {m: scores.aggregate.get(m) for m in request.metrics}
        progress.set(force=True, phase="done", perplexity_done=len(samples) if with_ppl else 0)
        return build_result(model_name, samples, outputs, scores, seconds)

    async def _generate_all(
        self, model_name: str, request: EvalRequest, samples: Sequence[Sample], progress: _Progress
    ) -> tuple[list[SampleOutput], float]:
        """Every sample through the engine at once (bounded); wall time of the whole phase."""
        in_flight = asyncio.Semaphore(self.max_in_flight)
        params = request.sampling()
        done = 0

        async def one(sample: Sample) -> SampleOutput:
            nonlocal done
            job = GenerationJob(params, model_name)
            if request.use_chat_template:
                job.messages = sample.messages
            else:
                job.prompt = sample.raw_prompt
            async with in_flight:
                output = await self._generate_one(job)
            done += 1
            progress.set(samples_done=done)
            return output

        start = time.perf_counter()
        # A TaskGroup cancels the other samples as soon as one fails fatally (model unloaded).
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(sample)) for sample in samples]
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None
        seconds = time.perf_counter() - start
        return [task.result() for task in tasks], seconds

    async def _generate_one(self, job: GenerationJob) -> SampleOutput:
        """One prediction; a sample the model cannot take is recorded as failed, not fatal."""
        for _ in range(MAX_OVERLOAD_RETRIES):
            try:
                completion, _ = await self.generation.complete(job)
            except EngineOverloaded as exc:  # other traffic filled the queue: wait our turn
                await asyncio.sleep(exc.retry_after or 1)
                continue
            except (InvalidRequest, GenerationFailed) as exc:
                return SampleOutput(error=exc.message)
            return SampleOutput(
                prediction=completion.text,
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
                finish_reason=completion.finish_reason,
            )
        return SampleOutput(error="the engine stayed overloaded; the sample was not generated")
