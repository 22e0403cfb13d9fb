"""One engine per loaded model: a thread that runs ``step()`` = schedule -> run -> postprocess.

HTTP handlers never touch the model: they put a ``Sequence`` on the inbox and read their own
``asyncio.Queue`` of ``StreamDelta``s (``delivery.py``). Each step the ``Scheduler`` picks who
joins and who leaves, the ``ModelRunner`` runs the forward pass and samples (all tensor code),
and the ``OutputProcessor`` turns the sampled ids into text and finished sequences.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from gpt_service.engine.delivery import LoopSink, Outbox, TokenStream
from gpt_service.engine.grammar import GrammarCompiler
from gpt_service.engine.output import OutputProcessor
from gpt_service.engine.runner import ModelRunner
from gpt_service.engine.sampling import RunOutput
from gpt_service.engine.scheduler import Scheduler, StepPlan
from gpt_service.engine.sequence import Sequence
from gpt_service.engine.tracing import guard_fx_traces, module_calls
from gpt_service.engine.types import Completion, SamplingParams, StreamDelta, TokenLogprob
from gpt_service.errors import EngineOverloaded, GenerationFailed, InvalidRequest, ModelUnloaded

logger = logging.getLogger(__name__)


@dataclass
class EngineStats:
    num_requests: int = 0
    num_prompt_tokens: int = 0
    num_generated_tokens: int = 0
    num_steps: int = 0
    # rows per forward pass, most recent last (bounded: a server runs for weeks)
    step_batch_sizes: deque[int] = field(default_factory=lambda: deque(maxlen=10_000))


class Engine:
    def __init__(
        self,
        name: str,
        model: Any,
        tokenizer: Any,
        device: Any,  # torch.device
        eos_ids: list[int],
        max_context: int,
        max_running: int = 32,
        max_waiting: int = 256,
        max_prefill_tokens: int = 2048,
        max_threads: int = 0,
        on_step: Callable[[Engine], None] | None = None,
        compile_decode: bool = False,
    ) -> None:
        self.name = name
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids
        self.max_context = max_context
        self.max_waiting = max_waiting
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
        self.runner = ModelRunner(
            model, device, pad_id, compile_decode, max_running, eos_ids, max_threads
        )
        vocab = getattr(model.config, "vocab_size", None) or len(tokenizer)
        self.grammars = GrammarCompiler(tokenizer, vocab)  # structured output (llguidance)
        budget = min(max_prefill_tokens, self.runner.prefill_token_budget())
        self.scheduler = Scheduler(max_running, budget)
        self.stats = EngineStats()
        self.on_step = on_step
        self._inbox: queue.SimpleQueue[Sequence] = queue.SimpleQueue()
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = False
        self._pending = 0  # submitted but not yet admitted to the scheduler (guarded by _lock)
        self._lock = threading.Lock()
        self.outbox = Outbox(name)
        self.output = OutputProcessor(tokenizer, eos_ids, max_context, self.outbox)
        # A step's deltas go out right before the next forward pass, which runs without the
        # GIL (a compiled step): the event loop encodes and sends them while the pass computes
        # instead of competing for the GIL with the engine's Python between passes (demo model,
        # one HTTP client: inter-token latency 1.25 vs 1.36 ms). Without a decode pass next,
        # the loop flushes itself.
        self.runner.before_forward = self.outbox.flush
        guard_fx_traces()  # graphs traced on other threads while this one runs the model
        self._thread = threading.Thread(target=self._loop, name=f"engine-{name}", daemon=True)
        self._thread.start()

    # ---- requester side (event loop thread) -------------------------------------------
    @property
    def num_waiting(self) -> int:
        return self._pending + self.scheduler.num_waiting

    @property
    def num_running(self) -> int:
        return self.scheduler.num_running

    def submit(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        emit: Callable[[StreamDelta], None],
        adapter: str | None = None,
    ) -> Sequence:
        if self._stopping:
            raise ModelUnloaded(f"model '{self.name}' is being unloaded")
        if not prompt_ids:
            raise InvalidRequest("prompt is empty after tokenization")
        if len(prompt_ids) >= self.max_context:
            raise InvalidRequest(
                f"prompt has {len(prompt_ids)} tokens; model '{self.name}' accepts at most "
                f"{self.max_context - 1}"
            )
        grammar = None
        if params.constraint is not None:  # compiled before (off this thread) by the service
            grammar = self.grammars.start(params.constraint)
            budget = min(params.max_tokens, self.max_context - len(prompt_ids))
            if grammar.closing_tokens > budget:
                raise InvalidRequest(
                    f"max_tokens: {budget} tokens cannot hold the shortest output this schema "
                    f"allows ({grammar.closing_tokens} tokens with this model's tokenizer)"
                )
        with self._lock:
            if self.num_waiting >= self.max_waiting:
                raise EngineOverloaded(
                    f"model '{self.name}' has {self.num_waiting} requests waiting; retry later",
                    retry_after=1,
                )
            self._pending += 1
        seq = Sequence(prompt_ids, params, emit, adapter=adapter, max_context=self.max_context)
        seq.grammar = grammar
        self._inbox.put(seq)
        self._wake.set()
        return seq

    def open_stream(
        self, prompt_ids: list[int], params: SamplingParams, adapter: str | None = None
    ) -> TokenStream:
        """Submit now (errors such as overload raise here) and return the stream of deltas."""
        sink = LoopSink(asyncio.get_running_loop(), asyncio.Queue())
        seq = self.submit(prompt_ids, params, sink, adapter)
        return TokenStream(seq, sink.queue, self.wake)

    async def generate(
        self, prompt_ids: list[int], params: SamplingParams, adapter: str | None = None
    ) -> Completion:
        start = time.perf_counter()
        first: float | None = None
        parts: list[str] = []
        ids: list[int] = []
        logprobs: list[TokenLogprob] = []
        final = StreamDelta()
        async for delta in self.open_stream(prompt_ids, params, adapter):
            if first is None and delta.token_ids:
                first = time.perf_counter() - start
            parts.append(delta.text)
            ids += delta.token_ids
            logprobs += delta.logprobs
            final = delta
        if final.error:
            raise ModelUnloaded(final.error) if self._stopping else GenerationFailed(final.error)
        return Completion(
            text="".join(parts),
            finish_reason=final.finish_reason or "stop",
            prompt_tokens=final.prompt_tokens,
            completion_tokens=final.completion_tokens,
            token_ids=ids,
            logprobs=logprobs,
            first_token_seconds=first,
            total_seconds=time.perf_counter() - start,
        )

    async def run_between_steps(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the engine thread between two steps (e.g. to attach an adapter)."""
        if self._stopping:
            raise ModelUnloaded(f"model '{self.name}' is being unloaded")
        future: Future[Any] = Future()
        self._calls.put((fn, future))
        self._wake.set()
        return await asyncio.wrap_future(future)

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        if self.runner.compiled is not None:
            self.runner.compiled.stop()
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)

    # ---- engine loop (its own thread) -------------------------------------------------
    def _loop(self) -> None:
        self.runner.use_threads(10**9)
        while not self._stopping:
            self._run_calls()
            self._admit_inbox()
            if not self.scheduler.has_work:
                self.outbox.flush()
                self._wake.wait(timeout=0.5)
                self._wake.clear()
                continue
            try:
                with module_calls():
                    self.step()
            except Exception as exc:  # one bad step fails its requests, never the loop
                logger.exception("engine %s step failed", self.name)
                self._fail_running(f"internal error in model '{self.name}': {exc}")
            if not self.scheduler.running:  # no decode pass next: nothing else would flush
                self.outbox.flush()
        self._admit_inbox()
        self._fail_all(f"model '{self.name}' was unloaded")
        self.outbox.flush()
        self._cancel_calls()

    def _take_calls(self) -> Iterator[tuple[Callable[[], Any], Future[Any]]]:
        while True:
            try:
                yield self._calls.get_nowait()
            except queue.Empty:
                return

    def _run_calls(self) -> None:
        for fn, future in self._take_calls():
            try:
                with module_calls():
                    future.set_result(fn())
            except Exception as exc:
                future.set_exception(exc)

    def _cancel_calls(self) -> None:
        for _, future in self._take_calls():
            future.set_exception(ModelUnloaded(f"model '{self.name}' was unloaded"))

    def _admit_inbox(self) -> None:
        while True:
            try:
                seq = self._inbox.get_nowait()
            except queue.Empty:
                return
            with self._lock:
                self._pending -= 1
                self.scheduler.add(seq)

    def step(self) -> None:
        plan = self.scheduler.schedule()
        self._drop_cancelled(plan)
        # Prefill first: joiners get their first token without waiting for a decode pass,
        # then one decode pass advances every row, the new ones included.
        if plan.prefill:
            for seq in plan.prefill:
                self._start(seq)
            self._postprocess(plan.prefill, self.runner.run(plan.prefill, is_prefill=True))
            self.outbox.flush()  # first tokens go out now, not after the decode pass
        if self.scheduler.running:
            decode = list(self.scheduler.running)
            self._postprocess(decode, self.runner.run(decode, is_prefill=False))
        self.stats.num_steps += 1
        if self.on_step:
            self.on_step(self)

    def _start(self, seq: Sequence) -> None:
        self.output.start(seq)
        self.stats.num_requests += 1
        self.stats.num_prompt_tokens += seq.num_prompt_tokens

    def _drop_cancelled(self, plan: StepPlan) -> None:
        if not plan.cancelled:
            return
        self.runner.release([s.seq_id for s in plan.cancelled])
        for seq in plan.cancelled:
            self.output.close(seq, "cancelled")

    def _postprocess(self, seqs: list[Sequence], out: RunOutput) -> None:
        done = self.output.process(seqs, out)
        self.stats.num_generated_tokens += len(seqs)
        self.stats.step_batch_sizes.append(len(seqs))
        if done:
            self.runner.release([s.seq_id for s in done])
            for seq in done:
                self.scheduler.finish(seq)

    def _fail_running(self, message: str) -> None:
        """After a failed step the shared cache is unusable: end every running sequence."""
        for seq in list(self.scheduler.running):
            self.scheduler.finish(seq)
            self.output.close(seq, "error", error=message)
        self.runner.reset()

    def _fail_all(self, message: str) -> None:
        for seq in self.scheduler.drain():
            self.output.close(seq, "error", error=message)
        self.runner.reset()
