"""The decode step compiled with ``torch.compile`` (inductor's C++/OpenMP code) over fixed shapes.

A decode step is one forward pass over ``(slots, 1)`` tokens against the slotted KV cache. When
compilation is on, the runner sizes its buffers in buckets (slots: powers of four up to the
running cap; columns: powers of two from ``MIN_COLUMNS``), so a handful of graphs cover every
step, the CPU analogue
of capturing a CUDA graph per batch size. In a compiled step every layer writes the new
key/value at the write column (a tensor, so the column moving does not recompile) and attends
over the whole buffer, the boolean mask hiding unused columns.

Graphs are compiled in a background thread (the engine serves eagerly until a shape's graph is
ready) and cached by inductor on disk (``TORCHINDUCTOR_CACHE_DIR``, under the data directory),
so a restart reuses them. A failure to compile logs one line and leaves the engine eager.

Prefills of two or more tokens run compiled too, through one graph with dynamic shapes for
any width (and one for any number of rows above one): the same model code, its keys and values
returned for the runner to place in slots. It is built after the first decode graph; a
prefill no graph takes runs the same code eagerly (never a compile on the engine thread), and
repeated failures turn compiled prefill off with one log line.

Once a graph is built, a step calls inductor's compiled code directly (``DirectCall``), not
through dynamo's guards and AOTAutograd's runtime wrappers, which took a fifth of a one-slot
demo step (0.52 vs 0.41 ms). What they check does not change here: a bucket fixes every shape,
stride and dtype, and the model's weights are the tensors captured with the graph (a served
model's weights are never replaced; attaching LoRA adapters turns compilation off). The direct call is checked
against the guarded one when the graph is built and not used if they differ.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import sys
import threading
import time
import types
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import Cache, CacheLayerMixin

from gpt_service.engine.onednn import as_extern_calls_in_inductor

logger = logging.getLogger(__name__)

Layout = list[tuple[int, int, torch.dtype]]  # per layer: kv heads, head dim, dtype
# A decode step's attention is written out (``_one_query_attention``) up to this many bytes of
# a layer's keys; beyond it the flash-attention kernel runs.
ONE_QUERY_ATTENTION_BYTES = 2 << 20
MIN_COLUMNS = 256  # smallest column bucket: short chats all fit one graph
EXIT_WAIT_SECONDS = 120.0  # at exit, the longest wait for a compilation in flight
MAX_PREFILL_ERRORS = 3  # compiled prefills that may fail before it is turned off
IDLE_EXIT_SECONDS = 1.0  # an idle compile thread ends after this long (a new one starts later)
# A compilation next to eager steps slows them down many times over: tracing and code
# generation hold the GIL, and the engine thread, which releases it at every torch op, waits
# up to the interpreter's switch interval (5 ms) to get it back. The first answer on a fresh
# data directory (demo model, 64 tokens, eager while its graph compiled) took 11.3 s of a
# 17.6-20.5 s start-up. So a compilation waits for a pause in the eager steps (up to
# ``COMPILE_DEFER_SECONDS``: under steady load it starts anyway), and while one runs the switch
# interval is ``COMPILE_SWITCH_INTERVAL``.
COMPILE_PAUSE_SECONDS = 0.2
COMPILE_DEFER_SECONDS = 3.0
COMPILE_SWITCH_INTERVAL = 0.0002
_switch = {"compiling": 0, "interval": 0.005}  # compile threads running, the interval before
_switch_lock = threading.Lock()


@contextlib.contextmanager
def _short_switch_interval() -> Iterator[None]:
    """The interpreter's switch interval at ``COMPILE_SWITCH_INTERVAL`` while any compile
    thread of the process is compiling."""
    with _switch_lock:
        if _switch["compiling"] == 0:
            _switch["interval"] = sys.getswitchinterval()
            sys.setswitchinterval(COMPILE_SWITCH_INTERVAL)
        _switch["compiling"] += 1
    try:
        yield
    finally:
        with _switch_lock:
            _switch["compiling"] -= 1
            if _switch["compiling"] == 0:
                sys.setswitchinterval(_switch["interval"])


# One capture at a time (each loaded model has its own compile thread): see DirectCall.capture.
_capture_lock = threading.Lock()


def _reason(exc: Exception) -> str:
    """An exception as one log-friendly line (type, then at most 300 characters)."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def use_cache_dir(path: Path) -> None:
    """Keep inductor's compiled graphs under ``path`` (the data directory) so a restart reuses
    them, unless ``TORCHINDUCTOR_CACHE_DIR`` names another place than torch's default."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if current is None or os.path.abspath(current) == os.path.abspath(default_cache_dir()):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path.resolve())


def bucket(n: int, minimum: int = 1, factor: int = 2) -> int:
    """The power of ``factor`` (at least ``minimum``) that holds ``n``."""
    size = minimum
    while size < n:
        size *= factor
    return size


def slot_bucket(n: int, max_slots: int) -> int:
    """Slots for ``n`` rows: 1, 4, 16 ... capped at ``max_slots`` (the running cap). Few graphs
    (each takes ~20-60 s to build on 2 cores); a padded row costs little in a weight-bound step."""
    return max(n, min(bucket(n, factor=4), max_slots))


def _gemv_decompositions() -> dict[Any, Callable[..., Any]]:
    """Inductor's decompositions, with a one-row matmul (a decode step of one slot) written as
    a multiply-and-sum that inductor turns into its own vectorised OpenMP reduction.

    One row times a weight matrix is bound by reading the weights; torch's ``mm`` runs it on
    one core (76M model on 2 cores: 17.9 ms for a token's 84 matmuls, eager or compiled), the
    reduction on both (6.8 ms, 44 GB/s; llama.cpp's f32 needs ~8 ms). Attention of one query
    per row is written out too (``_one_query_attention``)."""
    from torch._inductor.decomposition import select_decomp_table

    aten = torch.ops.aten
    table = dict(select_decomp_table())
    inductor_mm, inductor_addmm = table.get(aten.mm.default), table.get(aten.addmm.default)

    def gemv(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a[:, None, :] * b.t()[None]).sum(-1)  # (1, K) x (K, N): a sum over K per column

    def is_gemv(a: torch.Tensor, b: torch.Tensor) -> bool:
        return a.dim() == 2 and a.shape[0] == 1 and a.dtype == b.dtype and a.is_floating_point()

    def mm(a: torch.Tensor, b: torch.Tensor) -> Any:
        if is_gemv(a, b):
            return gemv(a, b)
        return NotImplemented if inductor_mm is None else inductor_mm(a, b)

    def addmm(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor, *, beta: Any = 1,
              alpha: Any = 1) -> Any:  # fmt: skip
        if is_gemv(a, b) and beta == 1 and alpha == 1:
            return bias + gemv(a, b)
        if inductor_addmm is None:
            return NotImplemented
        return inductor_addmm(bias, a, b, beta=beta, alpha=alpha)

    table[aten.mm.default] = mm
    table[aten.addmm.default] = addmm
    table[aten._scaled_dot_product_flash_attention_for_cpu.default] = _one_query_attention
    return table


def _one_query_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    *,
    attn_mask: torch.Tensor | None = None,
    scale: float | None = None,
) -> Any:
    """SDPA of one query token per row (a decode step) written out: two batched products with
    a softmax between them, each key/value head read once for its group of query heads.

    The CPU flash-attention kernel works in blocks of queries, and with one query it is slow
    while a layer's keys are small (one layer compiled, 2 threads, 256 columns: 4 demo rows
    230 us, 54 us written out; demo one stream 97 against 84 us). With more keys than
    ``ONE_QUERY_ATTENTION_BYTES`` reading them bounds both: a 16-slot step of the 76M model
    (4 MiB of keys a layer) took 9.9 ms of attention with the kernel, 11 ms written out.
    Written as inductor reductions (sums of broadcast products) instead of products, the demo's
    16-slot step took 6.5 ms against 3.9."""
    if query.shape[2] != 1 or dropout_p != 0.0 or is_causal:
        return NotImplemented  # prompts keep the kernel
    if key.numel() * key.element_size() > ONE_QUERY_ATTENTION_BYTES:
        return NotImplemented
    rows, heads, _, dim = query.shape
    kv_heads, columns = key.shape[1], key.shape[2]
    group = heads // kv_heads
    q = query.reshape(rows, kv_heads, group, dim)
    scores = torch.matmul(q, key.transpose(-1, -2)) * (dim**-0.5 if scale is None else scale)
    if attn_mask is not None:  # (rows or 1, heads or 1, 1, columns)
        mask = attn_mask.expand(rows, heads, 1, columns).reshape(rows, kv_heads, group, columns)
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask
    lse = torch.logsumexp(scores, -1)
    # A row that sees no column (a padding slot) gets zeros, as from the kernel, not NaNs.
    probs = torch.exp(scores - lse.masked_fill(lse == float("-inf"), 0)[..., None])
    out = torch.matmul(probs, value)  # (rows, kv heads, group, dim)
    return out.reshape(rows, heads, 1, dim), lse.reshape(rows, heads, 1)


def inductor_gemv(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
    """The inductor backend with one-row matmuls as reductions and one-query attention written
    out (see ``_gemv_decompositions``) and a C++ wrapper: the whole step is one call that runs
    without the GIL, so the event loop streams tokens while the graph computes, and no Python
    runs between kernels (demo model, 16 HTTP clients: 1077 vs 973 tok/s with the Python
    wrapper; 1 slot 1.06 vs 1.15 ms)."""
    from torch._inductor.compile_fx import compile_fx

    # AOTAutograd's cache keys do not cover decompositions: it could hand back a graph traced
    # without them. Inductor's own cache (the C++ code, keyed on the decomposed graph) stays.
    with (
        torch._functorch.config.patch(enable_autograd_cache=False),
        as_extern_calls_in_inductor(),  # oneDNN linear layers (onednn.py)
    ):
        return compile_fx(
            gm,
            example_inputs,
            decompositions=_gemv_decompositions(),
            config_patches={"cpp_wrapper": True},
        )


# Compilers whose thread was started, held weakly: an unloaded model's compiler (and model)
# is freed once its thread has ended.
_compilers: weakref.WeakSet[CompiledDecode] = weakref.WeakSet()


@atexit.register
def _finish_compilations_at_exit() -> None:
    """At interpreter exit, let compilations in flight end first: a process that exited while
    a compile thread was inside inductor aborted ("terminate called without an active
    exception", exit code 134; ``gpt-service evaluate`` in 2 of 10 runs)."""
    for compiler in list(_compilers):
        compiler.finish(EXIT_WAIT_SECONDS)


class DirectCall:
    """Inductor's compiled code of one graph, called with its inputs as the guarded call
    passed them: the model's tensors (parameters, packed weights) as they were, the step's
    arguments (``ids, positions, mask, column, *keys, *values``) put in their places."""

    def __init__(self, fn: Callable[[list[Any]], Any], inputs: list[Any], args: list[Any]):
        self._fn = fn
        where = {id(a): i for i, a in enumerate(args)}
        self._template = list(inputs)
        self._slots = [(n, where[id(x)]) for n, x in enumerate(inputs) if id(x) in where]
        if len(self._slots) != len(args):
            raise ValueError("not every step argument is an input of the compiled graph")

    def __call__(self, args: list[Any]) -> torch.Tensor:
        inputs = list(self._template)
        for n, i in self._slots:
            inputs[n] = args[i]
        (logits,) = self._fn(inputs)
        return logits

    @staticmethod
    def capture(call: Callable[[], torch.Tensor], args: list[Any]) -> DirectCall | None:
        """Run ``call`` (a guarded step) once, recording the inductor graph it runs and that
        graph's inputs; ``None`` when that is not one graph returning the step's result."""
        from torch._inductor.output_code import CompiledFxGraph

        seen: list[tuple[CompiledFxGraph, list[Any], Any]] = []
        thread = threading.get_ident()
        with _capture_lock:  # two threads' patches must not undo each other
            original = CompiledFxGraph.__call__

            def record(graph: CompiledFxGraph, inputs: Any) -> Any:
                if threading.get_ident() != thread:  # the engine thread runs other graphs
                    return original(graph, inputs)
                kept = list(inputs)
                out = original(graph, inputs)
                seen.append((graph, kept, out))
                return out

            CompiledFxGraph.__call__ = record  # type: ignore[method-assign]
            try:
                result = call()
            finally:
                CompiledFxGraph.__call__ = original  # type: ignore[method-assign]
        if len(seen) != 1:
            return None
        graph, inputs, out = seen[0]
        if not isinstance(out, (list, tuple)) or len(out) != 1 or out[0] is not result:
            return None
        fn = graph.current_callable
        return None if fn is None else DirectCall(fn, inputs, args)


class _GraphLayer(CacheLayerMixin):
    """A cache layer of a compiled graph: created initialized, positions always passed
    explicitly (so no sequence length of its own)."""

    is_compileable = True
    is_sliding = False

    def __init__(self) -> None:
        super().__init__()
        self.is_initialized = True

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        raise RuntimeError(f"{type(self).__name__} layers are created initialized")

    def get_seq_length(self) -> int:
        return 0

    def get_max_length(self) -> int:
        return -1


class CaptureLayer(_GraphLayer):
    """A layer's keys and values of a compiled prefill, kept as computed (no cache to grow)."""

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.keys, self.values = key_states, value_states
        return key_states, value_states

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return query_length, 0


class StaticSlotLayer(_GraphLayer):
    """A layer's slotted buffers as a compiled step sees them: written at ``column`` (a 1-element
    tensor), read whole (the mask hides the columns a row does not use)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, column: torch.Tensor) -> None:
        super().__init__()
        self.keys, self.values, self.column = keys, values, column

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.keys.index_copy_(2, self.column, key_states)
        self.values.index_copy_(2, self.column, value_states)
        return self.keys, self.values

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.keys.shape[2], 0


def unwrap_hub_kernel_forwards(model: torch.nn.Module) -> int:
    """Give each module whose class forward is wrapped by the ``kernels`` package
    (``use_kernelized_func``, transformers >= 5.25 on Llama, Qwen2, Mistral attention) its own
    forward back; returns how many.

    That wrapper hands the module's kernel functions to a global variable that, while any thread
    is tracing for ``torch.compile``, every thread reads and writes: an eager step on the engine
    thread during a graph's build in the compile thread changed it under the trace, and the
    build failed ("Unexpected type <class 'dict'>" creating a guard on it), leaving the server
    eager for good. The hub kernels it routes to are for GPUs; on the CPU every call ends in the
    function itself, so the wrapper does nothing here but that."""
    unwrapped = 0
    for module in model.modules():
        forward = type(module).forward
        original = getattr(forward, "__wrapped__", None)
        code = getattr(forward, "__code__", None)
        if original is None or code is None or code.co_name != "new_forward":
            continue
        if "forward" in vars(module):  # already its own
            continue
        if "kernels" not in Path(code.co_filename).parts:
            continue
        module.forward = types.MethodType(original, module)
        unwrapped += 1
    return unwrapped


class CompiledDecode:
    """Compiled decode graphs of one model, one per (slots, columns) bucket, built in the
    background; ``ready(shape, layout)`` says whether a step of that shape can run compiled."""

    def __init__(
        self,
        model: Any,
        forward_kwargs: dict[str, Any],
        window: int | None,
        typed_masks: bool,
        threads_for: Callable[[int], int],
        backend: str | Callable[..., Any] = inductor_gemv,
        background: bool = True,
    ) -> None:
        self.model = model
        unwrap_hub_kernel_forwards(model)  # before the first trace (see there)
        # dynamo keys graphs on this class's code, and the model's modules are not guarded
        # (``guard_filter_fn`` below): a graph traced for one model may serve another. The
        # steps branch on this, so that only models of the same layer classes share graphs
        # (a float model's graph for an int8 one failed with KeyError: 'weight').
        self._layer_classes = ",".join(sorted({type(m).__qualname__ for m in model.modules()}))
        self._kwargs = forward_kwargs  # use_cache, logits_to_keep; the cache goes in as "cache"
        self._window = window
        self._typed_masks = typed_masks
        self._threads_for = threads_for  # torch threads a step of this many slots runs with
        self._background = background  # False (tests): compile in ``ready``, on the caller
        # Grouped-query attention inside SDPA: without it transformers copies every layer's
        # keys/values per query head when a mask is given, which over a whole bucket of columns
        # made a 16-slot compiled step 2.5x slower than eager (demo model). Eager steps take the
        # same path (measured equal: 8.2 vs 8.4 ms at 1 slot, 19.6 vs 18.8 ms at 16; maxdiff 4e-6).
        os.environ.setdefault("TRANSFORMERS_SDPA_FORCE_GQA", "1")
        # Compile in this process, not a pool of compile workers: they held ~100 MB each for
        # the server's lifetime, and 2 cores gain nothing from compiling in parallel.
        torch._inductor.config.compile_threads = 1
        # One graph per shape bucket: never turn to dynamic shapes, never give up early.
        limit = torch._dynamo.config.cache_size_limit
        torch._dynamo.config.cache_size_limit = max(limit, 64)
        # The model's modules never change under a graph (attaching LoRA adapters turns
        # compilation off), so their guards are skipped: 0.2 ms less per step (1.26 vs 1.47 ms,
        # demo model, 1 slot).
        options = {"guard_filter_fn": torch.compiler.skip_guard_on_all_nn_modules_unsafe}
        self._fn = torch.compile(self._step, dynamic=False, backend=backend, options=options)
        self._prefill_fn = torch.compile(
            self._prefill, dynamic=True, backend=backend, options=options
        )
        self._num_layers = len(DynamicCache(config=model.config).layers)
        self.prefill_failed: str | None = None  # why compiled prefill was turned off
        self.num_prefills = 0  # prefills run through the prefill graphs
        self._prefill_errors = 0
        # Only graphs already built, never a compile on the engine thread (run-only mode is
        # this thread's: ``set_stance`` would also stop the compile thread).
        self._prefill_run = torch._dynamo.run(self._prefill_fn)
        self._stopped = False
        self._ready: set[tuple[int, int]] = set()
        self._direct: dict[tuple[int, int], DirectCall] = {}  # graphs called without guards
        self._wanted: set[tuple[int, int]] = set()
        self._jobs: queue.SimpleQueue[tuple[tuple[int, int], Layout] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None  # while compiling (ends when idle)
        self._start_lock = threading.Lock()
        self.failed: str | None = None  # why compilation was given up (then always eager)
        self._eager_at = 0.0  # when a step last ran eagerly for want of a graph

    # ---- the step -------------------------------------------------------------------------
    def _guard_layer_classes(self) -> None:
        """Traced: a branch on the model's layer classes, for dynamo to guard on (see
        ``__init__``)."""
        if not self._layer_classes:  # never true
            raise AssertionError

    def _step(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor,
        mask: torch.Tensor,
        column: torch.Tensor,
        keys: list[torch.Tensor],
        values: list[torch.Tensor],
    ) -> torch.Tensor:
        self._guard_layer_classes()
        # The step's own bookkeeping, in the graph rather than as eager ops around it (each
        # such op took 13-22 us on a cold cache after the graph, demo model): every row's new
        # column becomes visible here, and the positions move on at the end.
        mask.index_fill_(1, column, True)
        layers = [StaticSlotLayer(k, v, column) for k, v in zip(keys, values, strict=True)]
        full = mask[:, None, None, :]
        sliding = None
        if self._window is not None:  # rows are right-aligned: the window is the last columns
            cols = torch.arange(mask.shape[1], device=mask.device)
            sliding = full & (cols > column - self._window)
        out = self.model(
            input_ids=ids,
            attention_mask=self._masks(full, sliding),
            position_ids=positions,
            cache=Cache(layers=layers),
            **self._kwargs,
        )
        positions.add_(1)
        return out.logits[:, -1, :].float()

    def _masks(
        self, full: torch.Tensor, sliding: torch.Tensor | None
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """The 4D masks the model takes: one per layer type when its config types layers,
        else the sliding one for all layers (Mistral), or the full one without windows."""
        if sliding is None:
            return full
        if self._typed_masks:
            return {"full_attention": full, "sliding_attention": sliding}
        return sliding

    def _prefill(
        self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        self._guard_layer_classes()
        width = ids.shape[1]
        cols = torch.arange(width, device=ids.device)
        causal = cols[None, :] <= cols[:, None]
        # A padding position attends to itself only: its (unused) state stays finite.
        eye = cols[None, :] == cols[:, None]
        full = ((causal[None] & mask[:, None, :]) | eye[None])[:, None]
        sliding = None
        if self._window is not None:
            sliding = full & (cols[:, None] - cols[None, :] < self._window)
        captured = [CaptureLayer() for _ in range(self._num_layers)]
        out = self.model(
            input_ids=ids,
            attention_mask=self._masks(full, sliding),
            position_ids=positions,
            cache=Cache(layers=captured),
            **self._kwargs,
        )
        keys = [layer.keys for layer in captured]
        values = [layer.values for layer in captured]
        return out.logits[:, -1, :].float(), keys, values

    def prefill_ready(self, rows: int, width: int) -> bool:
        """True when a prefill of ``rows`` prompts padded to ``width`` tokens runs compiled;
        queues its graph otherwise (once a decode graph is ready: those come first)."""
        if width < 2 or self.prefill_failed is not None:
            return False  # dynamic shapes specialise a size of 1: one token stays eager
        return self.ready((min(rows, 2), 0), []) if self._ready else False

    def prefill(
        self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]] | None:
        """The last logits and each layer's keys and values of a prefill through the graphs
        built so far (a shape none of them takes runs the same code eagerly: dynamo's run-only
        mode, on this thread only), or ``None`` when that failed (the caller prefills eagerly;
        after ``MAX_PREFILL_ERRORS`` failures compiled prefill is turned off)."""
        try:
            out = self._prefill_run(ids, positions, mask)
        except Exception as exc:
            self._prefill_errors += 1
            reason = _reason(exc)
            if self._prefill_errors >= MAX_PREFILL_ERRORS:
                self.prefill_failed = reason
                logger.warning("compiled prefill disabled (%s)", reason)
            else:
                logger.warning("compiled prefill failed, prefilling eagerly (%s)", reason)
            return None
        self.num_prefills += 1
        return out

    def run(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor,
        mask: torch.Tensor,
        column: torch.Tensor,
        keys: list[torch.Tensor],
        values: list[torch.Tensor],
    ) -> torch.Tensor:
        """One compiled decode step; ``column`` is where every row's new key/value goes. The
        step also sets that column of ``mask`` and adds 1 to ``positions`` (in place)."""
        direct = self._direct.get((ids.shape[0], mask.shape[1]))
        if direct is not None:
            return direct([ids, positions, mask, column, *keys, *values])
        return self._fn(ids, positions, mask, column, keys, values)

    # ---- background compilation -------------------------------------------------------------
    def ready(self, shape: tuple[int, int], layout: Layout) -> bool:
        """True when a step of ``(slots, columns)`` runs compiled; queues its compilation
        otherwise. ``layout`` gives each layer's (kv heads, head dim, dtype)."""
        if shape in self._ready:
            return True
        self._eager_at = time.monotonic()  # an eager step follows (see COMPILE_PAUSE_SECONDS)
        if self.failed is None and not self._background:
            self._compile_logged(shape, layout)
            return shape in self._ready
        if self.failed is None and shape not in self._wanted:
            self._wanted.add(shape)
            # The compile thread ends once idle: it runs graphs on dummy buffers, so it keeps an
            # OpenMP team while it lives, and a second team shortens the engine's OpenMP spin
            # (``loader.on_own_thread``).
            with self._start_lock:
                self._jobs.put((shape, layout))
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._work, name="compile-decode", daemon=True
                    )
                    self._thread.start()
                    _compilers.add(self)
        return False

    def stop(self) -> None:
        """No more compilations (queued ones are dropped); a graph in flight still completes
        (in the background)."""
        self._stopped = True
        self._jobs.put(None)

    def finish(self, timeout: float) -> None:
        """Stop, and wait up to ``timeout`` seconds for a compilation in flight."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        self.stop()
        logger.info("waiting for the decode graph compilation in flight before exiting")
        thread.join(timeout)

    def _work(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=IDLE_EXIT_SECONDS)
            except queue.Empty:  # idle: end the thread, and its OpenMP team (see ready)
                with self._start_lock:
                    if self._jobs.empty():
                        self._thread = None
                        return
                continue
            if job is None or self.failed is not None or self._stopped:
                return
            self._wait_for_a_pause()
            if self.failed is not None or self._stopped:  # stopped while it waited
                return
            with _short_switch_interval():
                self._compile_logged(*job)

    def _wait_for_a_pause(self) -> None:
        """Until the eager steps pause for ``COMPILE_PAUSE_SECONDS`` (the first answers after
        a start go out at eager speed), at most ``COMPILE_DEFER_SECONDS``."""
        deadline = time.monotonic() + COMPILE_DEFER_SECONDS
        while not self._stopped and time.monotonic() < deadline:
            if time.monotonic() - self._eager_at >= COMPILE_PAUSE_SECONDS:
                return
            time.sleep(0.05)

    def _compile_logged(self, shape: tuple[int, int], layout: Layout) -> None:
        slots, columns = shape
        what = (
            f"decode graph for {slots} slots x {columns} columns"
            if columns
            else f"prefill graph for {'one prompt' if slots == 1 else 'several prompts'}"
        )
        logger.info("compiling the %s", what)
        start = time.perf_counter()
        try:
            self.compile_now(shape, layout)
        except Exception as exc:  # any failure: stay eager, say so once
            reason = _reason(exc)
            if columns == 0:  # prefills run eagerly, decode steps keep their graphs
                self.prefill_failed = reason
                logger.warning("compiled prefill disabled (%s)", reason)
            else:
                self.failed = reason
                logger.warning("compiled decode disabled, serving eagerly (%s)", reason)
            return
        logger.info("compiled %s ready in %.1f s", what, time.perf_counter() - start)

    @torch.inference_mode()
    def compile_now(self, shape: tuple[int, int], layout: Layout) -> None:
        """Compile (or load from inductor's cache) the graph of ``shape`` on dummy buffers."""
        slots, columns = shape
        if columns == 0:  # a prefill graph: ``slots`` is 1 (one prompt) or 2 (more)
            self._compile_prefill(slots)
            self._ready.add(shape)
            return
        torch.set_num_threads(self._threads_for(slots))  # inductor bakes the thread count in
        keys = [torch.zeros((slots, h, columns, d), dtype=t) for h, d, t in layout]
        values = [torch.zeros_like(k) for k in keys]
        mask = torch.zeros(slots, columns, dtype=torch.bool)
        mask[:, 0] = True
        ids = torch.zeros(slots, 1, dtype=torch.long)
        column = torch.zeros(1, dtype=torch.long)
        for _ in range(2):
            self._fn(ids, torch.zeros_like(ids), mask, column, keys, values)
        direct = self._direct_call(ids, mask, column, keys, values)
        if direct is not None:
            self._direct[shape] = direct
        self._ready.add(shape)

    def _compile_prefill(self, rows: int) -> None:
        torch.set_num_threads(self._threads_for(10**9))
        for width in (8, 5):  # two widths: the graph is dynamic before it is ready
            ids = torch.ones(rows, width, dtype=torch.long)
            mask = torch.ones(rows, width, dtype=torch.bool)
            mask[-1, :2] = False
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            self._prefill_fn(ids, positions, mask)

    def _direct_call(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        column: torch.Tensor,
        keys: list[torch.Tensor],
        values: list[torch.Tensor],
    ) -> DirectCall | None:
        """The graph just built, callable without guards, if that gives the guarded step's
        result and cache writes exactly (checked on a second set of inputs)."""
        positions = torch.zeros_like(ids)
        args = [ids, positions, mask, column, *keys, *values]
        try:
            direct = DirectCall.capture(lambda: self._fn(*args[:4], keys, values), args)
        except Exception:  # torch internals moved: the guarded call stays
            logger.debug("no direct call of the decode graph", exc_info=True)
            return None
        if direct is None:
            return None
        try:
            same = self._same_results(direct, ids, mask, keys, values)
        except Exception:  # a check that cannot run: the guarded call stays
            logger.debug("direct call of the decode graph not checked", exc_info=True)
            return None
        if not same:
            logger.info(
                "decode graph for %d x %d: direct call differs, keeping guards", *mask.shape
            )
        return direct if same else None

    def _same_results(
        self,
        direct: DirectCall,
        ids: torch.Tensor,
        mask: torch.Tensor,
        keys: list[torch.Tensor],
        values: list[torch.Tensor],
    ) -> bool:
        """Whether ``direct`` gives the guarded step's logits and writes (cache, mask,
        positions) exactly, on inputs other than the ones it was captured with."""
        columns = mask.shape[1]
        vocab = self.model.get_input_embeddings().num_embeddings
        generator = torch.Generator().manual_seed(0)
        check = [
            torch.randint(0, min(100, vocab), ids.shape, generator=generator),
            torch.full_like(ids, 7),
            torch.rand(mask.shape, generator=generator) < 0.5,
            torch.tensor([columns - 1]),
        ]
        check[2][:, -1] = False  # the step sets its column: a lost write shows below
        buffers = [torch.randn(k.shape, generator=generator, dtype=k.dtype) for k in keys + values]
        copies = [b.clone() for b in buffers]
        twins = [c.clone() for c in check]  # the step writes its mask and positions too
        n = len(keys)
        expected = self._fn(*check, buffers[:n], buffers[n:])
        got = direct([*twins, *copies])
        return torch.equal(expected, got) and all(
            torch.equal(a, b) for a, b in zip(check + buffers, twins + copies, strict=True)
        )
