"""Eager forward passes next to ``torch.fx`` traces on other threads (graphs built in the
background while the engine serves eagerly).

While ``torch.fx.Tracer.trace`` runs it replaces ``torch.nn.Module.__call__`` and
``__getattr__`` for the whole process, not for its thread. A module called on another thread
in that window goes through the tracer: with fx's own ``call_module`` (inductor traces small
pattern functions that way during a compile) it raised ``NameError: module is not installed as
a submodule``, and the engine failed the step's requests (77M model, one stream while its
graphs compiled: 2 runs of 4). Two traces on two threads (two models compiling) would also
restore each other's patches in the wrong order and leave one installed for good.

So every trace takes ``_tracing`` (one at a time in the process), and a trace whose tracer
routes module calls through its own bookkeeping also takes ``_module_calls``, which the engine
holds around its steps (``module_calls``). make_fx's ``PythonKeyTracer`` is left out of the
second: it calls a module's real ``forward`` and returns attributes unchanged, so other threads'
calls are unaffected, and it is the long one, the whole graph traced by AOTAutograd (1.5 s of a
77M model's compile), during which eager steps go on. Lock order: ``_module_calls`` before
``_tracing``, everywhere. A busy engine takes ``_module_calls`` again microseconds after each
step, so a trace waiting for it goes first (``_traces_waiting``).
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Iterator
from typing import Any

import torch.fx
from torch.fx.experimental.proxy_tensor import PythonKeyTracer

_tracing = threading.RLock()
_module_calls = threading.RLock()
_traces_waiting = 0  # traces waiting for _module_calls (changed under _count_lock)
_count_lock = threading.Lock()
_installed = False
_install_lock = threading.Lock()


@contextlib.contextmanager
def module_calls() -> Iterator[None]:
    """Hold while calling a model's modules (an engine step): no fx trace patches them."""
    while _traces_waiting and not _module_calls._is_owned():  # type: ignore[attr-defined]
        time.sleep(0.0005)
    with _module_calls:
        yield


def _count_waiting(change: int) -> None:
    global _traces_waiting
    with _count_lock:
        _traces_waiting += change


@contextlib.contextmanager
def _excluding_module_calls() -> Iterator[None]:
    _count_waiting(1)
    try:
        _module_calls.acquire()
    finally:
        _count_waiting(-1)
    try:
        yield
    finally:
        _module_calls.release()


def guard_fx_traces() -> None:
    """Make ``torch.fx.Tracer.trace`` take the locks above (once per process)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        trace = torch.fx.Tracer.trace

        @functools.wraps(trace)
        def locked_trace(self: torch.fx.Tracer, *args: Any, **kwargs: Any) -> Any:
            if type(self) is PythonKeyTracer:
                with _tracing:
                    return trace(self, *args, **kwargs)
            with _excluding_module_calls(), _tracing:
                return trace(self, *args, **kwargs)

        torch.fx.Tracer.trace = locked_trace  # type: ignore[method-assign]
        _installed = True
