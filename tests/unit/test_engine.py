"""The continuous-batching engine on a random-initialised Llama (real model code path)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gpt_service.config import Settings
from gpt_service.engine.registry import LoadedModel, ModelRegistry
from gpt_service.engine.types import SamplingParams
from gpt_service.errors import EngineOverloaded, InvalidRequest

GREEDY = SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True)
PROMPTS = [
    "hello",
    "你好，世界！人工智能是计算机科学的一个分支。",
    "Python is a programming",
    "机器学习",
]


async def test_greedy_tokens_are_the_same_alone_and_in_a_ragged_batch(llama: LoadedModel):
    engine = llama.engine
    alone = [await engine.generate(llama.encode(p), GREEDY) for p in PROMPTS]

    # Staggered arrival: sequences join while others are mid-decode.
    async def delayed(i: int, prompt: str):
        await asyncio.sleep(0.01 * i)
        return await engine.generate(llama.encode(prompt), GREEDY)

    together = await asyncio.gather(*(delayed(i, p) for i, p in enumerate(PROMPTS)))
    for a, b in zip(alone, together, strict=True):
        assert a.token_ids == b.token_ids
        assert a.completion_tokens == 24 and a.finish_reason == "length"
    assert max(engine.stats.step_batch_sizes) > 1  # they really shared forward passes


async def test_a_prefill_budget_spreads_joiners_over_steps_with_the_same_tokens(
    llama: LoadedModel,
):
    """With a budget of one joiner per step, a burst joins over several steps (rows decode in
    between) and every sequence still gets its solo greedy tokens."""
    engine = llama.engine
    alone = [await engine.generate(llama.encode(p), GREEDY) for p in PROMPTS]
    prefills: list[int] = []
    run = engine.runner.run

    def recording(seqs, is_prefill):
        if is_prefill:
            prefills.append(len(seqs))
        return run(seqs, is_prefill)

    engine.runner.run = recording  # type: ignore[method-assign]
    engine.scheduler.max_prefill_tokens = 1
    together = await asyncio.gather(*(engine.generate(llama.encode(p), GREEDY) for p in PROMPTS))
    assert [a.token_ids for a in alone] == [b.token_ids for b in together]
    assert prefills == [1] * len(PROMPTS)
    assert max(engine.stats.step_batch_sizes) > 1


async def test_cancelled_stream_leaves_the_batch_and_frees_its_cache(llama: LoadedModel):
    engine = llama.engine
    long_params = SamplingParams(max_tokens=200, temperature=0.0, ignore_eos=True)
    other = asyncio.create_task(engine.generate(llama.encode("机器学习"), long_params))
    received = 0
    async with engine.open_stream(llama.encode("hello"), long_params) as stream:
        async for delta in stream:
            received += len(delta.token_ids)
            if received >= 3:
                tokens_at_cancel = len(stream.seq.output_ids)
                break  # the client goes away
    cancelled = stream.seq
    for _ in range(400):
        if cancelled.finish_reason == "cancelled" and engine.runner.num_rows <= 1:
            break
        await asyncio.sleep(0.005)
    assert cancelled.finish_reason == "cancelled" and engine.runner.num_rows <= 1
    # It left within one step: at most the step in flight added a token or two.
    assert len(cancelled.output_ids) - tokens_at_cancel <= 2
    result = await other
    assert result.completion_tokens == 200  # the other sequence was not disturbed
    for _ in range(100):  # the loop releases the row right after emitting the final delta
        if engine.runner.num_rows == 0:
            break
        await asyncio.sleep(0.005)
    assert engine.runner.num_rows == 0 and engine.runner.cache is None


async def test_a_finished_stream_is_answered_while_others_keep_decoding(llama: LoadedModel):
    # A step's deltas are handed over right before the next forward pass (not after the step):
    # the last ones of a sequence that ends must still go out while the batch runs on.
    engine = llama.engine
    long_params = SamplingParams(max_tokens=200, temperature=0.0, ignore_eos=True)
    other = asyncio.create_task(engine.generate(llama.encode("机器学习"), long_params))
    while engine.stats.num_generated_tokens < 4:
        await asyncio.sleep(0.005)
    short = await engine.generate(llama.encode("hello"), GREEDY)
    assert short.completion_tokens == 24 and short.finish_reason == "length"
    assert not other.done()  # answered mid-batch, not when the engine went idle
    assert (await other).completion_tokens == 200


async def test_backpressure_rejects_past_the_waiting_queue(tiny_dir: Path):
    settings = Settings(data_dir=tiny_dir, _env_file=None)  # type: ignore[call-arg]
    settings.engine.max_waiting = 2
    settings.engine.max_running = 1
    registry = ModelRegistry(settings)
    await registry.load("tiny", "models/tiny-llama")
    model = registry.get("tiny")
    params = SamplingParams(max_tokens=50, temperature=0.0, ignore_eos=True)
    with pytest.raises(EngineOverloaded) as err:
        for _ in range(10):
            model.engine.submit(model.encode("hi"), params, emit=lambda d: None)
    assert err.value.retry_after == 1
    await registry.close()


async def test_seeded_sampling_is_reproducible_and_seeds_differ(llama: LoadedModel):
    def params(seed: int) -> SamplingParams:
        return SamplingParams(max_tokens=16, temperature=1.0, top_p=0.95, top_k=50, seed=seed)

    ids = llama.encode("hello")
    a, b, c = await asyncio.gather(
        llama.engine.generate(ids, params(7)),
        llama.engine.generate(ids, params(7)),
        llama.engine.generate(ids, params(8)),
    )
    assert a.token_ids == b.token_ids
    assert a.token_ids != c.token_ids


async def test_stop_strings_min_tokens_and_context_limit(llama: LoadedModel):
    engine = llama.engine
    free = await engine.generate(llama.encode("hello"), GREEDY)
    stop = free.text[3:5]
    assert stop
    cut = await engine.generate(
        llama.encode("hello"), SamplingParams(max_tokens=24, temperature=0.0, stop=(stop,))
    )
    assert cut.finish_reason == "stop" and cut.text == free.text[: free.text.index(stop)]
    context = llama.info.context_length
    near_end = [llama.encode("hi")[0]] * (context - 5)
    result = await engine.generate(near_end, GREEDY)
    assert result.finish_reason == "length" and result.completion_tokens == 5
    with pytest.raises(InvalidRequest):
        engine.submit([1] * context, GREEDY, emit=lambda d: None)


async def test_repetition_penalty_changes_greedy_output(llama: LoadedModel):
    ids = llama.encode("hello")
    plain = await llama.engine.generate(ids, GREEDY)
    penalised = await llama.engine.generate(
        ids, SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True, repetition_penalty=5.0)
    )
    assert plain.token_ids != penalised.token_ids
    # A strong penalty makes repeats much rarer than in the unpenalised output.
    assert len(set(penalised.token_ids)) > len(set(plain.token_ids))


async def test_extreme_sampling_values_do_not_break_the_batch(llama: LoadedModel):
    """A vanishing temperature or top_p once overflowed float32 and failed every row's step."""
    engine = llama.engine
    normal = SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True)
    odd = [
        SamplingParams(max_tokens=8, temperature=1e-45, ignore_eos=True),
        SamplingParams(max_tokens=8, temperature=1.0, top_p=1e-45, ignore_eos=True),
        SamplingParams(max_tokens=8, temperature=1.0, repetition_penalty=5e-324, ignore_eos=True),
    ]
    results = await asyncio.gather(
        engine.generate(llama.encode("hello"), normal),
        *(engine.generate(llama.encode("hi"), p) for p in odd),
    )
    assert all(r.completion_tokens == 8 and r.finish_reason == "length" for r in results)


async def test_unread_stream_is_cancelled_when_dropped(llama: LoadedModel):
    engine = llama.engine
    stream = engine.open_stream(
        llama.encode("hello"), SamplingParams(max_tokens=10_000, temperature=0.0, ignore_eos=True)
    )
    seq = stream.seq
    del stream  # e.g. the client left before the response started
    for _ in range(200):
        if seq.finish_reason is not None:
            break
        await asyncio.sleep(0.01)
    assert seq.finish_reason == "cancelled"


async def test_huge_top_k_and_seed_do_not_break_the_batch(llama: LoadedModel):
    """Found by schemathesis: top_k = 2**63 overflowed int64 and failed the whole step."""
    params = SamplingParams(max_tokens=4, temperature=1.0, top_k=2**63, seed=2**70, ignore_eos=True)
    normal = SamplingParams(max_tokens=4, temperature=0.0, ignore_eos=True)
    results = await asyncio.gather(
        llama.engine.generate(llama.encode("hi"), params),
        llama.engine.generate(llama.encode("hello"), normal),
    )
    assert [r.completion_tokens for r in results] == [4, 4]
