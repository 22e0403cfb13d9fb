"""Eager engine steps while ``torch.fx`` traces on another thread (graphs compiled in the
background): fx patches ``torch.nn.Module.__call__`` for the whole process while it traces."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch.fx.experimental.proxy_tensor import make_fx

from gpt_service.engine.registry import LoadedModel
from gpt_service.engine.types import SamplingParams

GREEDY = SamplingParams(max_tokens=12, temperature=0.0, ignore_eos=True)
PROMPT = "你好，世界！hello"


@contextmanager
def trace_in_flight(trace: Callable[[Callable[..., torch.Tensor]], object]) -> Iterator[None]:
    """``trace`` runs on another thread and stays inside the traced function until exit."""
    entered, release = threading.Event(), threading.Event()

    def blocking(x: torch.Tensor) -> torch.Tensor:
        entered.set()
        release.wait(60)
        return x + 1

    thread = threading.Thread(target=trace, args=(blocking,))
    thread.start()
    assert entered.wait(60)
    try:
        yield
    finally:
        release.set()
        thread.join(60)


class Blocking(torch.nn.Module):
    def __init__(self, fn: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


async def test_an_eager_step_waits_for_an_fx_trace_instead_of_failing(llama: LoadedModel):
    """fx's own tracer (inductor traces pattern functions that way) sends every module call
    in the process to ``path_of_module``: an engine step then failed with ``NameError: module
    is not installed as a submodule``. The step now waits for the trace to end."""
    engine = llama.engine
    alone = await engine.generate(llama.encode(PROMPT), GREEDY)
    with trace_in_flight(lambda fn: torch.fx.symbolic_trace(Blocking(fn))):
        task = asyncio.create_task(engine.generate(llama.encode(PROMPT), GREEDY))
        await asyncio.sleep(0.5)
        assert not task.done()  # waiting for the trace (or failed: see task.result())
    traced = await asyncio.wait_for(task, 60)
    assert traced.token_ids == alone.token_ids


async def test_an_aot_trace_of_a_whole_graph_does_not_hold_eager_steps(llama: LoadedModel):
    """make_fx's tracer (AOTAutograd's trace of a whole graph, seconds on a large model) calls
    modules' real forward: steps go on, with the same tokens."""
    engine = llama.engine
    alone = await engine.generate(llama.encode(PROMPT), GREEDY)
    with trace_in_flight(lambda fn: make_fx(fn)(torch.ones(2))):
        during = await asyncio.wait_for(engine.generate(llama.encode(PROMPT), GREEDY), 60)
    assert during.token_ids == alone.token_ids
