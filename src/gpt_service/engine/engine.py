"""One engine per loaded model: a thread that runs ``step()`` = schedule -> run -> postprocess.

HTTP handlers never touch the model: they put a ``Sequence`` on the inbox and read their own
``asyncio.Queue`` of ``StreamDelta``s, which the loop feeds thread-safely.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import torch

from gpt_service.engine.detokenizer import IncrementalDetokenizer, StopStringMatcher
from gpt_service.engine.grammar import GrammarCompiler
from gpt_service.engine.logprobs import top_logprobs
from gpt_service.engine.runner import ModelRunner
from gpt_service.engine.sampling import make_generator, sample
from gpt_service.engine.scheduler import Scheduler, StepPlan
from gpt_service.engine.sequence import Sequence
from gpt_service.engine.types import (
    Completion,
    FinishReason,
    SamplingParams,
    StreamDelta,
    TokenLogprob,
)
from gpt_service.errors import EngineOverloaded, GenerationFailed, InvalidRequest, ModelUnloaded

logger = logging.getLogger(__name__)

# Forwards of at least this much work (2 x parameters x tokens, in FLOPs) use every intra-op
# thread, smaller ones one (which leaves the other core to the event loop). Measured on 2 cores:
# demo model (4.9M parameters), a 2nd thread made decode 18% faster at 8 rows (78 MFLOP) and
# nothing at 4 (39 MFLOP), prefill 25% faster at ~60 tokens; one row of a 76M model (150 MFLOP,
# weight-bound) runs faster on both cores.
PARALLEL_FLOPS = 60e6


@dataclass
class EngineStats:
    num_requests: int = 0
    num_prompt_tokens: int = 0
    num_generated_tokens: int = 0
    num_steps: int = 0
    # rows per forward pass, most recent last (bounded: a server runs for weeks)
    step_batch_sizes: deque[int] = field(default_factory=lambda: deque(maxlen=10_000))


@dataclass
class _Text:
    """Per-sequence text state owned by the loop thread."""

    detok: IncrementalDetokenizer
    stops: StopStringMatcher


@dataclass(frozen=True, eq=False)
class LoopSink:
    """Where a sequence's deltas go: an ``asyncio.Queue`` read on ``loop``."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[StreamDelta]

    def __call__(self, delta: StreamDelta) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, delta)


def _deliver(items: list[tuple[Sequence, StreamDelta]]) -> None:
    """Runs on the requesters' event loop."""
    for seq, delta in items:
        seq.emit.queue.put_nowait(delta)  # type: ignore[attr-defined]


class TokenStream:
    """Async iterator over one sequence's deltas; leaving it early cancels the sequence."""

    def __init__(self, engine: Engine, seq: Sequence, out: asyncio.Queue[StreamDelta]) -> None:
        self.engine = engine
        self.seq = seq
        self._out = out

    async def __aiter__(self) -> AsyncIterator[StreamDelta]:
        try:
            while True:
                delta = await self._out.get()
                yield delta
                if delta.is_final:
                    return
        finally:
            self.cancel()

    async def __aenter__(self) -> TokenStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cancel()

    def __del__(self) -> None:
        # A stream dropped without being read (e.g. the client left before the response
        # started) must not keep generating.
        self.cancel()

    def cancel(self) -> None:
        """Ask the loop to drop the sequence (a no-op once it has finished)."""
        if self.seq.finish_reason is None:
            self.seq.is_cancelled = True
            self.engine.wake()


class Engine:
    def __init__(
        self,
        name: str,
        model: Any,
        tokenizer: Any,
        device: torch.device,
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
        # torch's thread count is per thread once set, and a new thread starts from the last
        # value any thread set: the loop sets its own at start (see ``_loop``).
        self.max_threads = max_threads or os.cpu_count() or 1
        self._flops_per_token = 2 * sum(p.numel() for p in model.parameters())
        self.runner = ModelRunner(
            model, device, pad_id, compile_decode, self._threads_for, max_slots=max_running
        )
        vocab = getattr(model.config, "vocab_size", None) or len(tokenizer)
        self.grammars = GrammarCompiler(tokenizer, vocab)  # structured output (llguidance)
        self.scheduler = Scheduler(max_running, max_prefill_tokens)
        self.stats = EngineStats()
        self.on_step = on_step
        self._inbox: queue.SimpleQueue[Sequence] = queue.SimpleQueue()
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = False
        self._pending = 0  # submitted but not yet admitted to the scheduler (guarded by _lock)
        self._lock = threading.Lock()
        self._threads = 0
        self._texts: dict[int, _Text] = {}
        self._outbox: list[tuple[Sequence, StreamDelta]] = []
        self._generators: dict[int, torch.Generator] = {}
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
        return TokenStream(self, seq, sink.queue)

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
        self._use_threads(10**9)
        while not self._stopping:
            self._run_calls()
            self._admit_inbox()
            if not self.scheduler.has_work:
                self._wake.wait(timeout=0.5)
                self._wake.clear()
                continue
            try:
                with torch.inference_mode():
                    self.step()
            except Exception as exc:  # one bad step fails its requests, never the loop
                logger.exception("engine %s step failed", self.name)
                self._fail_running(f"internal error in model '{self.name}': {exc}")
            self._flush()
        self._admit_inbox()
        self._fail_all(f"model '{self.name}' was unloaded")
        self._flush()
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
            tokens = sum(s.num_tokens for s in plan.prefill)
            self._use_threads(max(tokens, self.runner.num_slots))
            self._postprocess(plan.prefill, self.runner.prefill(plan.prefill))
            self._flush()  # first tokens go out now, not after the decode pass
        if self.scheduler.running:
            decode = list(self.scheduler.running)
            self._use_threads(self.runner.num_slots)  # free slots are computed too
            self._postprocess(decode, self.runner.decode(decode))
        self.stats.num_steps += 1
        if self.on_step:
            self.on_step(self)

    def _threads_for(self, tokens: int) -> int:
        """All intra-op threads for big forwards, one for small ones (which gain nothing from
        a second thread and would take the core the event loop needs)."""
        big = self._flops_per_token * tokens >= PARALLEL_FLOPS
        return self.max_threads if big else 1

    def _use_threads(self, tokens: int) -> None:
        threads = self._threads_for(tokens)
        if threads != self._threads:
            torch.set_num_threads(threads)
            self._threads = threads

    def _start(self, seq: Sequence) -> None:
        self._texts[seq.seq_id] = _Text(
            IncrementalDetokenizer(self.tokenizer, seq.prompt_ids),
            StopStringMatcher(seq.params.stop),
        )
        if seq.params.seed is not None and not seq.params.is_greedy:
            self._generators[seq.seq_id] = make_generator(seq.params.seed, self.runner.device)
        self.stats.num_requests += 1
        self.stats.num_prompt_tokens += seq.num_prompt_tokens

    def _drop_cancelled(self, plan: StepPlan) -> None:
        if not plan.cancelled:
            return
        self.runner.release([s.seq_id for s in plan.cancelled])
        for seq in plan.cancelled:
            self._close(seq, "cancelled")

    def _postprocess(self, seqs: list[Sequence], logits: torch.Tensor) -> None:
        tokens = sample(logits, seqs, self.eos_ids, self._generators).tolist()
        wants_logprobs = any(s.params.logprobs is not None for s in seqs)
        done: list[Sequence] = []
        for row, (seq, token) in enumerate(zip(seqs, tokens, strict=True)):
            if seq.first_token_time is None:
                seq.first_token_time = time.perf_counter()
            lp = None
            if wants_logprobs and seq.params.logprobs is not None:
                lp = top_logprobs(logits[row], token, seq.params.logprobs, self.tokenizer)
            if self._advance(seq, token, lp):
                done.append(seq)
        self.stats.num_generated_tokens += len(seqs)
        self.stats.step_batch_sizes.append(len(seqs))
        if done:
            self.runner.release([s.seq_id for s in done])
            for seq in done:
                self.scheduler.finish(seq)

    def _advance(self, seq: Sequence, token: int, logprob: TokenLogprob | None) -> bool:
        """Append one token and emit its text (maybe empty); True when the sequence finished."""
        p = seq.params
        is_eos = token in self.eos_ids and not p.ignore_eos
        text = self._texts[seq.seq_id]
        seq.output_ids.append(token)
        delta = "" if is_eos else text.stops.push(text.detok.add(token))
        reason: FinishReason | None = None
        grammar_done = seq.grammar is not None and not is_eos and seq.grammar.advance(token)
        if is_eos or grammar_done or text.stops.is_stopped:
            reason = "stop"
        elif seq.num_output_tokens >= p.max_tokens or seq.num_tokens >= self.max_context:
            reason = "length"
        if reason is not None:
            delta += text.stops.flush()
        self._emit(
            seq, StreamDelta(text=delta, token_ids=[token], logprobs=[logprob] if logprob else [])
        )
        if reason is not None:
            self._close(seq, reason)
        return reason is not None

    def _close(self, seq: Sequence, reason: FinishReason, error: str | None = None) -> None:
        seq.finish_reason = reason
        self._texts.pop(seq.seq_id, None)
        self._generators.pop(seq.seq_id, None)
        self._emit(
            seq,
            StreamDelta(
                finish_reason=reason,
                prompt_tokens=seq.num_prompt_tokens,
                completion_tokens=seq.num_output_tokens,
                error=error,
            ),
        )

    def _emit(self, seq: Sequence, delta: StreamDelta) -> None:
        """Queue a delta for the requester; ``_flush`` hands a step's deltas over at once."""
        self._outbox.append((seq, delta))

    def _flush(self) -> None:
        """Deliver queued deltas: one event-loop callback per requesting loop, not per token."""
        if not self._outbox:
            return
        outbox, self._outbox = self._outbox, []
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Sequence, StreamDelta]]] = {}
        for seq, delta in outbox:
            if isinstance(seq.emit, LoopSink):
                by_loop.setdefault(seq.emit.loop, []).append((seq, delta))
                continue
            try:
                seq.emit(delta)
            except Exception:  # a broken sink loses its own deltas, never the loop
                logger.exception(
                    "engine %s: delivering to sequence %d failed", self.name, seq.seq_id
                )
                seq.is_cancelled = True
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, items)
            except RuntimeError:  # the requesters' event loop is gone: nobody is listening
                for seq, _ in items:
                    seq.is_cancelled = True

    def _fail_running(self, message: str) -> None:
        """After a failed step the shared cache is unusable: end every running sequence."""
        for seq in list(self.scheduler.running):
            self.scheduler.finish(seq)
            self._close(seq, "error", error=message)
        self.runner.reset()

    def _fail_all(self, message: str) -> None:
        for seq in self.scheduler.drain():
            self._close(seq, "error", error=message)
        self.runner.reset()
