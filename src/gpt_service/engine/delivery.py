"""Handing deltas from the engine thread to the requesters' event loops (pure Python).

The loop thread queues each step's deltas in an ``Outbox``; ``flush`` delivers them with one
event-loop callback per requesting loop (not one per token). A requester reads its own
``asyncio.Queue`` through a ``TokenStream``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from gpt_service.engine.sequence import Sequence
from gpt_service.engine.types import StreamDelta

logger = logging.getLogger(__name__)


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


class Outbox:
    """A step's deltas, queued on the engine thread and handed over at once by ``flush``."""

    def __init__(self, name: str) -> None:
        self.name = name  # the engine's, for log lines
        self.items: list[tuple[Sequence, StreamDelta]] = []

    def put(self, seq: Sequence, delta: StreamDelta) -> None:
        self.items.append((seq, delta))

    def flush(self) -> None:
        """Deliver queued deltas: one event-loop callback per requesting loop, not per token."""
        if not self.items:
            return
        items, self.items = self.items, []
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Sequence, StreamDelta]]] = {}
        for seq, delta in items:
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
        for loop, batch in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, batch)
            except RuntimeError:  # the requesters' event loop is gone: nobody is listening
                for seq, _ in batch:
                    seq.is_cancelled = True


class TokenStream:
    """Async iterator over one sequence's deltas; leaving it early cancels the sequence."""

    def __init__(
        self, seq: Sequence, out: asyncio.Queue[StreamDelta], wake: Callable[[], None]
    ) -> None:
        self.seq = seq
        self._out = out
        self._wake = wake  # tells the engine loop to look at the cancellation

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
            self._wake()
