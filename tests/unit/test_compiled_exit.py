"""A process that ends while a decode graph compiles in the background waits for it first
(``compiled._finish_compilations_at_exit``): one that exited mid-compile aborted with exit code 134."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.tiny_models import save_llama

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import torch
    from transformers import AutoModelForCausalLM
    from gpt_service.engine.compiled import CompiledDecode

    model_dir, marker = sys.argv[1], Path(sys.argv[2])

    def slow_backend(gm, example_inputs):  # a compile that takes a while
        time.sleep(2)
        marker.write_text("compiled")
        return gm.forward

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    cfg = model.config
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    layout = [(cfg.num_key_value_heads, head_dim, torch.float32)] * cfg.num_hidden_layers
    compiled = CompiledDecode(model, {"use_cache": True}, None, False, lambda n: 1,
                              backend=slow_backend)
    assert not compiled.ready((1, 256), layout)  # queued: the background thread compiles
    time.sleep(0.5)
    print("exiting", flush=True)
    """
)


def test_exit_waits_for_a_compile_in_flight(tmp_path: Path) -> None:
    model_dir = save_llama(tmp_path / "tiny")
    marker = tmp_path / "marker"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(model_dir), str(marker)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "exiting" in done.stdout
    assert marker.read_text() == "compiled"  # the exit waited for the compile to end


def _background_compiler(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A ``CompiledDecode`` of a tiny Llama compiling in the background with a backend that
    returns the graph as is (fast), and the model's cache layout."""
    import torch
    from transformers import AutoModelForCausalLM

    from gpt_service.engine.compiled import CompiledDecode

    model = AutoModelForCausalLM.from_pretrained(save_llama(tmp_path / "tiny")).eval()
    cfg = model.config
    layout = [(cfg.num_key_value_heads, cfg.hidden_size // cfg.num_attention_heads,
               torch.float32)] * cfg.num_hidden_layers  # fmt: skip
    compiled = CompiledDecode(
        model, {"use_cache": True}, None, False, lambda n: 1, backend=lambda gm, ex: gm.forward
    )
    return compiled, layout


def test_a_stopped_compiler_and_its_model_are_freed(tmp_path: Path) -> None:
    # The exit hook holds compilers weakly: an unloaded model is not kept for the process's life.
    import gc
    import weakref

    compiled, layout = _background_compiler(tmp_path)
    model = compiled.model
    compiled.ready((1, 256), layout)
    thread = compiled._thread
    assert thread is not None
    compiled.finish(60)
    assert not thread.is_alive()
    gone = weakref.ref(model)
    del compiled, model
    gc.collect()
    assert gone() is None


def test_an_idle_compile_thread_ends_and_a_later_graph_starts_another(
    tmp_path: Path, monkeypatch
) -> None:
    # An idle compile thread ends (and its OpenMP team with it: ``loader.on_own_thread``).
    from gpt_service.engine import compiled as compiled_module

    monkeypatch.setattr(compiled_module, "IDLE_EXIT_SECONDS", 0.05)
    compiled, layout = _background_compiler(tmp_path)
    assert not compiled.ready((1, 256), layout)
    first = compiled._thread
    assert first is not None
    first.join(120)
    assert not first.is_alive() and compiled._thread is None  # built, then idle: ended
    assert compiled.ready((1, 256), layout)
    assert not compiled.ready((4, 256), layout)  # a new shape: a new thread builds it
    second = compiled._thread
    assert second is not None and second is not first
    second.join(120)
    assert compiled.ready((4, 256), layout) and compiled._thread is None


async def test_on_own_thread_returns_or_raises_and_its_thread_ends() -> None:
    import threading

    from gpt_service.engine.loader import on_own_thread

    seen: list[threading.Thread] = []

    def work(x: int) -> int:
        seen.append(threading.current_thread())
        if x < 0:
            raise ValueError("negative")
        return x * 2

    assert await on_own_thread(work, 21) == 42
    with pytest.raises(ValueError, match="negative"):
        await on_own_thread(work, -1)
    assert threading.main_thread() not in seen and len(set(seen)) == 2  # a thread per call
    for thread in seen:
        thread.join(5)
        assert not thread.is_alive()
