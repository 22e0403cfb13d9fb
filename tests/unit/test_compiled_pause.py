"""A graph compilation gives way to eager steps (engine/compiled.py): it waits for a pause in
them, for a while at most, and while it runs the interpreter switches threads more often."""

from __future__ import annotations

import queue
import sys
import threading
import time
from types import SimpleNamespace

import pytest

from gpt_service.engine import compiled
from gpt_service.engine.compiled import CompiledDecode


def _stepping(owner: SimpleNamespace, stop: threading.Event) -> threading.Thread:
    """A thread that marks an eager step every 10 ms until ``stop``."""

    def run() -> None:
        while not stop.is_set():
            owner._eager_at = time.monotonic()
            time.sleep(0.01)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _owner() -> SimpleNamespace:
    owner = SimpleNamespace(_stopped=False, failed=None, _eager_at=time.monotonic())
    owner._wait_for_a_pause = lambda: CompiledDecode._wait_for_a_pause(owner)  # type: ignore[arg-type]
    return owner


def test_a_compilation_starts_once_the_eager_steps_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiled, "COMPILE_PAUSE_SECONDS", 1.0)  # a stalled stepper is no pause
    owner = _owner()
    stop = threading.Event()
    thread = _stepping(owner, stop)
    threading.Timer(0.5, stop.set).start()
    owner._wait_for_a_pause()
    assert stop.is_set()  # not before the steps stopped
    assert time.monotonic() - owner._eager_at >= compiled.COMPILE_PAUSE_SECONDS
    thread.join()


def test_under_steady_eager_steps_a_compilation_starts_anyway(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(compiled, "COMPILE_PAUSE_SECONDS", 5.0)
    monkeypatch.setattr(compiled, "COMPILE_DEFER_SECONDS", 0.3)
    owner = _owner()
    stop = threading.Event()
    thread = _stepping(owner, stop)
    try:
        start = time.monotonic()
        owner._wait_for_a_pause()
        assert time.monotonic() - start >= 0.3  # it waited for the limit, not for a pause
        assert thread.is_alive()
    finally:
        stop.set()
        thread.join()


def test_a_compile_thread_stopped_while_it_waits_compiles_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(compiled, "COMPILE_PAUSE_SECONDS", 5.0)
    owner = _owner()
    owner._jobs = queue.SimpleQueue()
    owner._jobs.put(((1, 256), []))
    owner._compile_logged = lambda *job: pytest.fail("compiled after stop")
    stop = threading.Event()
    thread = _stepping(owner, stop)
    threading.Timer(0.3, lambda: setattr(owner, "_stopped", True)).start()
    try:
        CompiledDecode._work(owner)  # type: ignore[arg-type]  # returns: stopped
    finally:
        stop.set()
        thread.join()


def test_the_switch_interval_is_short_while_compiling_and_restored_after() -> None:
    before = sys.getswitchinterval()
    with compiled._short_switch_interval():
        assert sys.getswitchinterval() == pytest.approx(compiled.COMPILE_SWITCH_INTERVAL)
        with compiled._short_switch_interval():  # a second model compiling at the same time
            pass
        assert sys.getswitchinterval() == pytest.approx(compiled.COMPILE_SWITCH_INTERVAL)
    assert sys.getswitchinterval() == pytest.approx(before)
