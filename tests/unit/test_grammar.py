"""Constrained rows in the engine on a random Llama: valid JSON within tight budgets, and free
rows in the same batch unchanged."""

from __future__ import annotations

import asyncio
import json

import jsonschema
import pytest

from gpt_service.engine.registry import LoadedModel
from gpt_service.engine.types import Constraint, SamplingParams
from gpt_service.errors import InvalidRequest

SCHEMA = {
    "type": "object",
    "properties": {
        "名字": {"type": "string"},
        "scores": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 4},
        "inner": {
            "type": "object",
            "properties": {"ok": {"type": "boolean"}, "level": {"enum": ["高", "低"]}},
            "required": ["ok", "level"],
        },
    },
    "required": ["名字", "scores", "inner"],
}
CONSTRAINT = Constraint.json_schema(SCHEMA)


async def test_json_is_complete_even_with_the_tightest_budget(llama: LoadedModel):
    engine = llama.engine
    need = engine.grammars.compile(CONSTRAINT).closing_tokens
    ids = llama.encode("你好")
    runs = [
        engine.generate(
            ids,
            SamplingParams(max_tokens=need + extra, temperature=1.5, seed=i, constraint=CONSTRAINT),
        )
        for i, extra in enumerate([0, 1, 5, 20, 60, 200] * 2)
    ]
    for completion in await asyncio.gather(*runs):
        assert completion.finish_reason == "stop", completion.text
        jsonschema.validate(json.loads(completion.text), SCHEMA)
    with pytest.raises(InvalidRequest, match="max_tokens"):
        engine.submit(ids, SamplingParams(max_tokens=need - 1, constraint=CONSTRAINT), print)


async def test_free_rows_are_unchanged_by_constrained_neighbours(llama: LoadedModel):
    engine = llama.engine
    free = SamplingParams(max_tokens=80, temperature=0.0, ignore_eos=True)
    ids = llama.encode("机器学习")
    alone = await engine.generate(ids, free)
    constrained = SamplingParams(max_tokens=200, temperature=0.9, constraint=CONSTRAINT)
    mixed = await asyncio.gather(
        engine.generate(ids, free), *(engine.generate(ids, constrained) for _ in range(3))
    )
    assert mixed[0].token_ids == alone.token_ids
    for completion in mixed[1:]:
        jsonschema.validate(json.loads(completion.text), SCHEMA)
    assert max(engine.stats.step_batch_sizes) >= 2  # they shared forward passes
