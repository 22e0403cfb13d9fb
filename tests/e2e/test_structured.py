"""Structured output through the official clients on a real server, on the demo model and on
a random tiny Llama: whatever the model's quality, every answer must validate."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import jsonschema
import openai
import pytest
from openai import AsyncOpenAI, OpenAI
from pydantic import BaseModel, Field

from tests.server import RunningServer, start_server
from tests.tiny_models import save_llama

MODELS = ["demo", "tiny"]
SAMPLED = {"temperature": 0.9, "top_p": 1.0}
CITY = {"type": "string", "enum": ["北京", "上海", "深圳"]}
SCHEMAS = {
    "nested": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "city": CITY,
            "home": {
                "type": "object",
                "properties": {"x": {"type": "number"}, "y": {"type": "integer"}},
                "required": ["x", "y"],
                "additionalProperties": False,
            },
        },
        "required": ["name", "city", "home"],
        "additionalProperties": False,
    },
    "array": {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": CITY, "minItems": 2, "maxItems": 3},
            "ok": {"type": "boolean"},
        },
        "required": ["tags", "ok"],
        "additionalProperties": False,
    },
    "numbers": {
        "type": "object",
        "properties": {
            "score": {"type": "number", "minimum": 0, "maximum": 1},
            "count": {"type": "integer", "minimum": 1, "maximum": 9},
            "grade": {"enum": ["优", "良", "差"]},
        },
        "required": ["score", "count", "grade"],
        "additionalProperties": False,
    },
}


class Person(BaseModel):
    name: str
    age: int = Field(ge=0, le=150)
    city: str


@pytest.fixture(scope="module")
def structured_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data_dir = tmp_path_factory.mktemp("structured-data")
    save_llama(data_dir / "models" / "tiny")
    with start_server(data_dir) as server:  # the demo model is the current one
        load = {"model_name": "tiny", "model_path": "models/tiny"}
        httpx.post(f"{server.url}/models/load", json=load, timeout=120).raise_for_status()
        yield server


@pytest.fixture(scope="module")
def client(structured_server: RunningServer) -> OpenAI:
    return OpenAI(base_url=f"{structured_server.url}/v1", api_key="x", max_retries=0, timeout=120)


def _schema_format(name: str, schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_chat_json_schema_sampled_validates(client: OpenAI, model: str, name: str) -> None:
    schema = SCHEMAS[name]
    reply = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "介绍一个城市"}],
        response_format=_schema_format(name, schema),
        max_tokens=200,
        n=3,
        seed=1,
        **SAMPLED,
    )
    for choice in reply.choices:
        assert choice.finish_reason == "stop", choice.message.content
        jsonschema.validate(json.loads(choice.message.content), schema)


@pytest.mark.parametrize("model", MODELS)
def test_parse_with_pydantic_model(client: OpenAI, model: str) -> None:
    reply = client.chat.completions.parse(
        model=model,
        messages=[{"role": "user", "content": "给我一个人"}],
        response_format=Person,
        max_tokens=200,
        **SAMPLED,
    )
    person = reply.choices[0].message.parsed
    assert isinstance(person, Person) and 0 <= person.age <= 150


@pytest.mark.parametrize("model", MODELS)
def test_json_object_streamed_and_completions(client: OpenAI, model: str) -> None:
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "JSON please"}],
        response_format={"type": "json_object"},
        max_tokens=120,
        stream=True,
        **SAMPLED,
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert isinstance(json.loads(text), dict)
    schema = SCHEMAS["numbers"]
    completion = client.completions.create(
        model=model,
        prompt="数据：",
        max_tokens=120,
        extra_body={"response_format": _schema_format("n", schema)},
        **SAMPLED,
    )
    jsonschema.validate(json.loads(completion.choices[0].text), schema)


def test_bad_schemas_are_400_naming_the_problem(client: OpenAI) -> None:
    messages = [{"role": "user", "content": "x"}]
    bad = {"type": "object", "properties": {"a": {"type": "no-such-type"}}}
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(
            model="demo", messages=messages, response_format=_schema_format("bad", bad)
        )
    assert "schema" in error.value.message and "no-such-type" in error.value.message
    with pytest.raises(openai.BadRequestError) as error:  # cannot fit in the budget
        client.chat.completions.create(
            model="demo",
            messages=messages,
            response_format=_schema_format("big", SCHEMAS["nested"]),
            max_tokens=5,
        )
    assert "max_tokens" in error.value.message


async def test_constrained_and_free_rows_share_the_engine(structured_server: RunningServer):
    client = AsyncOpenAI(base_url=f"{structured_server.url}/v1", api_key="x", max_retries=0)
    schema = SCHEMAS["nested"]
    messages = [{"role": "user", "content": "你好"}]

    async def one(i: int) -> str | None:
        extra = {"response_format": _schema_format("n", schema)} if i % 2 else {}
        reply = await client.chat.completions.create(
            model=MODELS[i // 2 % 2], messages=messages, max_tokens=120, **SAMPLED, **extra
        )
        return reply.choices[0].message.content

    texts = await asyncio.gather(*(one(i) for i in range(16)))
    for i, text in enumerate(texts):
        if i % 2:
            jsonschema.validate(json.loads(text), schema)
        else:
            assert text is not None
    await client.close()
