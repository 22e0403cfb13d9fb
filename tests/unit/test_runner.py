"""The slotted KV cache of ``ModelRunner`` under joins and leaves (real Llama/GPT-2 code paths).

Each schedule mixes what the runner must get right: finished sequences free a slot that a later
joiner reuses, several sequences join in one step, a prompt longer than the cache window joins
late (the window moves right), sequences run past the spare columns (the buffers are
reallocated), and most slots empty out (the batch is compacted). Every sequence's greedy tokens
must be the ones it gets alone, and those must be what ``model.generate`` gives; also for
models whose layers attend to a sliding window shorter than the sequences.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from gpt_service.engine.compiled import DirectCall
from gpt_service.engine.onednn import use_onednn_linear
from gpt_service.engine.runner import CHUNK, ModelRunner
from gpt_service.engine.sequence import Sequence
from gpt_service.engine.types import SamplingParams
from gpt_service.errors import InvalidRequest
from tests.tiny_models import TINY_SHAPE

PARAMS = SamplingParams(temperature=0.0, ignore_eos=True)

# step -> sequences joining then: (name, prompt length, tokens to generate)
SCHEDULE: dict[int, list[tuple[str, int, int]]] = {
    0: [("a", 5, 20), ("b", 12, 90), ("c", 3, 8)],
    2: [("d", 7, 30)],
    9: [("e", 4, 12)],  # c has left: e takes its slot
    10: [("g", 60, 10)],  # longer than the window so far
    11: [("f", 9, 6)],
    30: [("h", 2, 80)],
    31: [("i", 11, 5), ("j", 6, 5), ("k", 8, 5)],
}


def _prompts(vocab: int) -> dict[str, list[int]]:
    rng = random.Random(0)
    return {
        name: [rng.randrange(3, vocab) for _ in range(length)]
        for joins in SCHEDULE.values()
        for name, length, _ in joins
    }


def _greedy(model, logits: torch.Tensor) -> list[int]:
    logits = logits.clone()
    logits[:, model.config.eos_token_id] = float("-inf")  # as ignore_eos / min_new_tokens do
    return logits.argmax(-1).tolist()


def _run(model, schedule, prompts) -> tuple[dict[str, list[int]], ModelRunner, dict[str, int]]:
    """Drive the runner like ``Engine.step``: prefill joiners, then one decode over every slot."""
    runner = ModelRunner(model, torch.device("cpu"), pad_id=0)
    running: dict[str, Sequence] = {}
    wanted: dict[str, int] = {}
    out: dict[str, list[int]] = {}
    peak_slots = in_place_joins = 0
    for step in range(max(schedule) + 200):
        joiners = []
        for name, _, n in schedule.get(step, []):
            seq = Sequence(prompts[name], PARAMS, emit=lambda d: None)
            running[name], wanted[name] = seq, n
            joiners.append(seq)
        if joiners:
            before = runner.cache
            for seq, token in zip(joiners, _greedy(model, runner.prefill(joiners)), strict=True):
                seq.output_ids.append(token)
            in_place_joins += before is not None and runner.cache is before
        if not running:
            if step > max(schedule):
                break
            continue
        seqs = list(running.values())
        peak_slots = max(peak_slots, len(runner.slots))
        for seq, token in zip(seqs, _greedy(model, runner.decode(seqs)), strict=True):
            seq.output_ids.append(token)
        done = [name for name, seq in running.items() if len(seq.output_ids) >= wanted[name]]
        runner.release([running[name].seq_id for name in done])
        for name in done:
            out[name] = running.pop(name).output_ids[: wanted[name]]
    return out, runner, {"peak_slots": peak_slots, "in_place_joins": in_place_joins}


def _sliding(kind: str, attn: str = "sdpa"):
    """Random models with sliding-window layers (window 8): all layers, or one of two."""
    torch.manual_seed(0)
    shape = dict(vocab_size=300, **TINY_SHAPE, eos_token_id=2, pad_token_id=0)
    if kind == "mistral":
        config = MistralConfig(sliding_window=8, **shape)
        return MistralForCausalLM._from_config(config, attn_implementation=attn).eval()
    config = Qwen2Config(use_sliding_window=True, sliding_window=8, max_window_layers=1, **shape)
    return Qwen2ForCausalLM._from_config(config, attn_implementation=attn).eval()


def _model(tiny_dir: Path, arch: str):
    if arch.endswith("-sliding"):
        return _sliding(arch.removesuffix("-sliding"))
    return AutoModelForCausalLM.from_pretrained(tiny_dir / "models" / arch).eval()


@pytest.mark.parametrize("arch", ["tiny-llama", "tiny-gpt2", "mistral-sliding", "qwen2-sliding"])
def test_joins_and_leaves_give_every_sequence_its_solo_tokens(tiny_dir: Path, arch: str):
    model = _model(tiny_dir, arch)
    prompts = _prompts(model.config.vocab_size)
    together, runner, stats = _run(model, SCHEDULE, prompts)

    assert stats["in_place_joins"] >= 1  # a joiner went into a freed slot, no reallocation

    assert runner.num_rows == 0 and runner.cache is None  # everything was released
    assert stats["peak_slots"] < sum(len(j) for j in SCHEDULE.values())  # slots were reused
    assert max(n for joins in SCHEDULE.values() for _, _, n in joins) > CHUNK  # ran past spares
    for joins in SCHEDULE.values():
        for name, _, n in joins:
            alone, _, _ = _run(model, {0: [(name, 0, n)]}, prompts)
            assert together[name] == alone[name], name
            with torch.inference_mode():
                reference = model.generate(
                    torch.tensor([prompts[name]]),
                    max_new_tokens=n,
                    min_new_tokens=n,
                    do_sample=False,
                    pad_token_id=0,
                )
            assert alone[name] == reference[0, len(prompts[name]) :].tolist(), name


def test_decode_rejects_a_batch_that_is_not_the_cache(tiny_dir: Path):
    model = AutoModelForCausalLM.from_pretrained(tiny_dir / "models" / "tiny-llama").eval()
    runner = ModelRunner(model, torch.device("cpu"), pad_id=0)
    a, b = (Sequence([5, 6, 7], PARAMS, emit=lambda d: None) for _ in range(2))
    runner.prefill([a])
    with pytest.raises(ValueError, match="does not match"):
        runner.decode([a, b])


def test_sliding_windows_without_sdpa_are_refused_clearly():
    with pytest.raises(InvalidRequest, match="sliding-window"):
        ModelRunner(_sliding("mistral", attn="eager"), torch.device("cpu"), pad_id=0)


# A short schedule for the compiled path: up to 4 rows (4 slots) in one 256-column bucket.
# The first prefill is eager (no decode graph yet), e's is compiled (one row), i and j's too
# (two rows, padded; i is longer than the sliding window of the sliding models).
COMPILED_SCHEDULE: dict[int, list[tuple[str, int, int]]] = {
    0: [("a", 5, 20), ("c", 3, 8)],
    9: [("e", 4, 30)],
    11: [("i", 11, 6), ("j", 6, 5)],
}


def _compiled_run(model, schedule, prompts, **options):
    """``_run`` with every decode step compiled (graphs built on the spot, not in background)."""
    original = ModelRunner.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.enable_compile(lambda slots: 1, background=False, **options)

    ModelRunner.__init__ = init  # type: ignore[method-assign]
    try:
        return _run(model, schedule, prompts)
    finally:
        ModelRunner.__init__ = original  # type: ignore[method-assign]


@pytest.mark.parametrize("arch", ["tiny-llama", "tiny-gpt2", "mistral-sliding", "qwen2-sliding"])
def test_compiled_decode_gives_the_eager_and_generate_tokens(tiny_dir: Path, arch: str):
    # The engine's model runs its linear layers through oneDNN (as served); the reference is
    # transformers' own ``generate`` on an untouched copy.
    model, reference_model = _model(tiny_dir, arch), _model(tiny_dir, arch)
    assert use_onednn_linear(model) > 0
    check_compiled_tokens(model, reference_model)


def check_compiled_tokens(model, reference_model) -> None:
    """``model``'s greedy tokens are the same compiled (every graph built and used) and
    eager, alone and in batches, and the same as ``reference_model.generate`` gives."""
    prompts = _prompts(model.config.vocab_size)
    compiled, runner, _ = _compiled_run(model, COMPILED_SCHEDULE, prompts)
    assert runner.compiled is not None and runner.compiled.failed is None
    # decode: 1 row, then up to 4 rows in 4 slots; prefill: one row, then two
    assert runner.compiled._ready == {(1, 256), (4, 256), (1, 0), (2, 0)}
    assert set(runner.compiled._direct) == {(1, 256), (4, 256)}  # steps skip the guards
    assert runner.compiled.prefill_failed is None and runner.compiled.num_prefills == 2
    eager, _, _ = _run(model, COMPILED_SCHEDULE, prompts)
    assert compiled == eager
    for joins in COMPILED_SCHEDULE.values():
        for name, _, n in joins:
            alone, _, _ = _compiled_run(model, {0: [(name, 0, n)]}, prompts)
            assert alone[name] == compiled[name], name
            with torch.inference_mode():
                reference = reference_model.generate(
                    torch.tensor([prompts[name]]),
                    max_new_tokens=n,
                    min_new_tokens=n,
                    do_sample=False,
                    pad_token_id=0,
                )
            assert alone[name] == reference[0, len(prompts[name]) :].tolist(), name


def test_a_direct_call_that_differs_is_not_used(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch):
    """The unguarded call of a graph is checked against the guarded one: a wrong one (here,
    one that would always pick token 3) is dropped and the steps keep the guarded tokens."""
    capture = DirectCall.capture

    used = []

    def wrong(call, args):
        direct = capture(call, args)
        assert direct is not None
        right = direct._fn

        def always_3(inputs):
            used.append(1)
            (logits,) = right(inputs)
            logits[:, 3] += 1e4
            return [logits]

        direct._fn = always_3
        return direct

    model = _model(tiny_dir, "tiny-llama")
    assert use_onednn_linear(model) > 0
    prompts = _prompts(model.config.vocab_size)
    guarded, _, _ = _compiled_run(model, COMPILED_SCHEDULE, prompts)
    monkeypatch.setattr(DirectCall, "capture", staticmethod(wrong))
    out, runner, _ = _compiled_run(model, COMPILED_SCHEDULE, prompts)
    assert runner.compiled is not None and (4, 256) in runner.compiled._ready
    assert runner.compiled._direct == {}
    assert len(used) == 2  # each graph's check ran the wrong call
    assert out == guarded


def test_a_prefill_no_graph_takes_runs_eagerly_without_compiling(tiny_dir: Path):
    """Prefills go through the graphs built so far only: three prompts when only the one-prompt
    graph exists run the same code eagerly (no compile on the engine thread), same results."""
    model = _model(tiny_dir, "tiny-llama")
    runner = ModelRunner(model, torch.device("cpu"), pad_id=0)
    runner.enable_compile(lambda slots: 1, background=False)
    compiled = runner.compiled
    assert compiled is not None
    compiled._compile_logged((1, 0), [])
    assert compiled._ready == {(1, 0)}
    frames = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    ids = torch.randint(3, 200, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, :4] = mask[2, :2] = False
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        out = compiled.prefill(ids, positions, mask)
        eager = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1]
    assert out is not None and compiled.prefill_failed is None
    assert torch.allclose(out[0], eager, atol=1e-5)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == frames  # nothing compiled
    assert compiled._ready == {(1, 0)}


def test_a_failing_compile_falls_back_to_eager(tiny_dir: Path, caplog: pytest.LogCaptureFixture):
    def broken_backend(gm, example_inputs):
        raise RuntimeError("no compiler here")

    model = _model(tiny_dir, "tiny-llama")
    prompts = _prompts(model.config.vocab_size)
    with caplog.at_level("WARNING", logger="gpt_service.engine.compiled"):
        out, runner, _ = _compiled_run(model, COMPILED_SCHEDULE, prompts, backend=broken_backend)
    assert runner.compiled is not None and "no compiler here" in (runner.compiled.failed or "")
    assert not runner.compiled._ready
    assert [r.message for r in caplog.records].count(
        f"compiled decode disabled, serving eagerly ({runner.compiled.failed})"
    ) == 1
    assert out == _run(model, COMPILED_SCHEDULE, prompts)[0]
