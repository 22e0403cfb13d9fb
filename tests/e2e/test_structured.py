"""Structured output through the official clients on a real server, on the demo model and on
a random tiny Llama: whatever the model's quality, every answer must validate."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import ollama
import openai
import pytest
from openai import AsyncOpenAI, OpenAI
from pydantic import BaseModel, Field

from tests.server import RunningServer, start_server
from tests.tiny_models import TINY_SHAPE, build_tokenizer

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


def save_long_llama(path: Path) -> None:
    """The tiny random Llama, with room for a prompt that lists tools."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    shape = {**TINY_SHAPE, "max_position_embeddings": 2048}
    config = LlamaConfig(
        vocab_size=len(tokenizer), **shape, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)


@pytest.fixture(scope="module")
def structured_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data_dir = tmp_path_factory.mktemp("structured-data")
    save_long_llama(data_dir / "models" / "tiny")
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
    parse = client.beta.chat.completions.parse if model == "tiny" else client.chat.completions.parse
    reply = parse(
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


WEATHER = {
    "type": "object",
    "properties": {
        "city": CITY,
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "detailed": {"type": "boolean"},
    },
    "required": ["city", "days", "detailed"],
    "additionalProperties": False,
}
ADD = {
    "type": "object",
    "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
    "required": ["a", "b"],
    "additionalProperties": False,
}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "天气", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "add", "parameters": ADD}},
]  # fmt: skip
PARAMS = {"get_weather": WEATHER, "add": ADD}
ASK = [{"role": "user", "content": "北京天气怎么样？"}]


def _check_calls(calls) -> None:
    assert calls
    for call in calls:
        assert call.id.startswith("call_") and call.type == "function"
        jsonschema.validate(json.loads(call.function.arguments), PARAMS[call.function.name])


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("choice", ["required", "named"])
def test_forced_tool_calls_validate(client: OpenAI, model: str, choice: str) -> None:
    tool_choice = (
        "required" if choice == "required" else {"type": "function", "function": {"name": "add"}}
    )
    reply = client.chat.completions.create(
        model=model, messages=ASK, tools=TOOLS, tool_choice=tool_choice, max_tokens=200, n=2,
        **SAMPLED,
    )  # fmt: skip
    # The random tiny model, sampled, may write several calls with numbers of dozens of digits
    # and reach max_tokens (3% of its answers): such an answer says "length" and carries no
    # calls; every answer that ends must carry valid ones.
    finished = 0
    for c in reply.choices:
        if c.finish_reason == "length":
            assert c.message.tool_calls is None
            continue
        finished += 1
        _check_calls(c.message.tool_calls)
        assert c.finish_reason == ("tool_calls" if choice == "required" else "stop")
        if choice == "named":
            assert [t.function.name for t in c.message.tool_calls] == ["add"]
    stream = client.chat.completions.create(
        model=model, messages=ASK, tools=TOOLS, tool_choice=tool_choice, max_tokens=200,
        stream=True, **SAMPLED,
    )  # fmt: skip
    calls: dict[int, dict] = {}
    finish = None
    for chunk in stream:
        choice0 = chunk.choices[0]
        finish = choice0.finish_reason or finish
        for delta in choice0.delta.tool_calls or []:
            entry = calls.setdefault(delta.index, {"id": delta.id, "name": "", "args": ""})
            entry["name"] += delta.function.name or ""
            entry["args"] += delta.function.arguments or ""
    if finish != "length":
        finished += 1
        assert calls and all(c["id"] for c in calls.values())
        for entry in calls.values():
            jsonschema.validate(json.loads(entry["args"]), PARAMS[entry["name"]])
        assert finish == ("tool_calls" if choice == "required" else "stop")
    assert finished  # of three answers, at least one ended (all three cut: ~3e-5)


def test_tool_history_is_rendered_and_auto_answers(client: OpenAI) -> None:
    history = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "北京", "days": 1, "detailed": false}'},
        }]},
        {"role": "tool", "tool_call_id": "call_1", "content": "晴，25度"},
    ]  # fmt: skip
    for tool_choice in ("auto", "none"):
        reply = client.chat.completions.create(
            model="tiny", messages=history, tools=TOOLS, tool_choice=tool_choice, max_tokens=30
        )
        message = reply.choices[0].message
        assert message.content is not None or message.tool_calls
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(
            model="tiny", messages=ASK, tools=TOOLS, max_tokens=30,
            tool_choice={"type": "function", "function": {"name": "nope"}},
        )  # fmt: skip
    assert "nope" in error.value.message


@pytest.fixture(scope="module")
def oc(structured_server: RunningServer) -> ollama.Client:
    return ollama.Client(host=structured_server.url, timeout=120)


@pytest.mark.parametrize("model", MODELS)
def test_ollama_format_schema_and_json(oc: ollama.Client, model: str) -> None:
    options = {"temperature": 0.9, "num_predict": 200}
    for name in ("nested", "array"):
        schema = SCHEMAS[name]
        reply = oc.chat(model, messages=ASK, format=schema, options=options)
        jsonschema.validate(json.loads(reply.message.content), schema)
        parts = oc.generate(model, "城市：", format=schema, options=options, stream=True)
        jsonschema.validate(json.loads("".join(p.response for p in parts)), schema)
    reply = oc.generate(model, "JSON:", format="json", options=options)
    assert isinstance(json.loads(reply.response), dict)
    Person.model_validate_json(
        oc.chat(model, messages=ASK, format=Person.model_json_schema(), options=options)
        .message.content
    )


def test_ollama_chat_with_tools_and_tool_history(oc: ollama.Client) -> None:
    history = [
        *ASK,
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "北京", "days": 1, "detailed": False}}}
        ]},
        {"role": "tool", "content": "晴，25度", "tool_name": "get_weather"},
    ]  # fmt: skip
    for stream in (False, True):
        reply = oc.chat("tiny", messages=history, tools=TOOLS, stream=stream,
                        options={"num_predict": 20})  # fmt: skip
        last = list(reply)[-1] if stream else reply
        assert last.done and last.message.role == "assistant"
        for call in last.message.tool_calls or []:  # a random model rarely calls, but if so
            jsonschema.validate(call.function.arguments, PARAMS[call.function.name])
    assert "tools" in oc.show("tiny").capabilities


def test_native_api_response_format(structured_server: RunningServer) -> None:
    url = structured_server.url
    schema = SCHEMAS["numbers"]
    fmt = _schema_format("n", schema)
    common = {"model_name": "tiny", "max_tokens": 120, "temperature": 0.9, "response_format": fmt}
    one = httpx.post(f"{url}/generate", json={**common, "prompt": "数据"}, timeout=60).json()
    jsonschema.validate(json.loads(one["text"]), schema)
    chat = httpx.post(f"{url}/chat", json={**common, "messages": ASK}, timeout=60).json()
    jsonschema.validate(json.loads(chat["message"]["content"]), schema)
    batch = httpx.post(f"{url}/batch", json={**common, "prompts": ["a", "b", "c"]}, timeout=60)
    for result in batch.json()["results"]:
        jsonschema.validate(json.loads(result["text"]), schema)
    with httpx.stream("POST", f"{url}/generate/stream", json={**common, "prompt": "x"}) as r:
        lines = [json.loads(line[5:]) for line in r.iter_lines() if line.startswith("data:")]
    jsonschema.validate(json.loads("".join(d.get("text", "") for d in lines)), schema)
    bad = {**common, "prompt": "x", "response_format": {"type": "json_schema", "json_schema": {
        "schema": {"type": "object", "properties": {"a": {"type": "bogus"}}}}}}  # fmt: skip
    r = httpx.post(f"{url}/generate", json=bad, timeout=60)
    assert r.status_code == 400 and "bogus" in r.json()["detail"]
