"""The tool-call parsers on fixed model outputs, whole and streamed split at every point."""

from __future__ import annotations

import json

import pytest

from gpt_service.errors import InvalidRequest
from gpt_service.services.structured import Function, plan_tools, prepare_messages
from gpt_service.services.tool_calls import (
    HermesParser,
    detect_format,
    fold,
    make_parser,
    parse_text,
)

NAMES = {"get_weather", "add"}
WEATHER = {"city": "北京", "unit": "celsius"}

CASES = [
    # (format, model output, expected content, expected calls)
    (
        "hermes",
        '好的，我来查。<tool_call>\n{"name": "get_weather", "arguments": {"city": "北京", "unit": "celsius"}}\n</tool_call>',
        "好的，我来查。",
        [("get_weather", WEATHER)],
    ),
    (
        "hermes",
        '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "北京", "unit": "celsius"}}\n</tool_call>',
        "\n",
        [("add", {"a": 1, "b": 2}), ("get_weather", WEATHER)],
    ),
    ("hermes", "没有工具调用，只是 <tool 文本 < 和 >。", "没有工具调用，只是 <tool 文本 < 和 >。", []),
    (  # an unknown function stays text
        "hermes",
        '<tool_call>{"name": "nope", "arguments": {}}</tool_call>',
        '<tool_call>{"name": "nope", "arguments": {}}</tool_call>',
        [],
    ),
    (
        "llama3_json",
        '{"name": "get_weather", "parameters": {"city": "北京", "unit": "celsius"}}',
        "",
        [("get_weather", WEATHER)],
    ),
    (
        "llama3_json",
        '<|python_tag|>{"name": "add", "parameters": {"a": 1, "b": 2}}; {"name": "add", "parameters": {"a": 3, "b": 4}}',
        "",
        [("add", {"a": 1, "b": 2}), ("add", {"a": 3, "b": 4})],
    ),
    ("llama3_json", "北京今天晴。{不是JSON", "北京今天晴。{不是JSON", []),
    ("llama3_json", "{broken json", "{broken json", []),
    (
        "mistral",
        '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "北京", "unit": "celsius"}}, {"name": "add", "arguments": {"a": 1, "b": 2}}]',
        "",
        [("get_weather", WEATHER), ("add", {"a": 1, "b": 2})],
    ),
    (  # [TOOL_CALLS] is a special token the detokenizer skips
        "mistral",
        ' [{"name": "add", "arguments": {"a": 1, "b": 2}}]',
        "",
        [("add", {"a": 1, "b": 2})],
    ),
    ("mistral", "[1] 是一个列表。", "[1] 是一个列表。", []),
    (  # content first, then the tag (before v11), text after the array
        "mistral",
        '好的。[TOOL_CALLS] [{"name": "add", "arguments": {"a": 1, "b": 2}}]\n完成',
        "好的。完成",
        [("add", {"a": 1, "b": 2})],
    ),
    (  # v11+: one tag per call, name[ARGS]{arguments}
        "mistral",
        '[TOOL_CALLS]get_weather[ARGS]{"city": "北京", "unit": "celsius"}[TOOL_CALLS]add[ARGS]{"a": 1, "b": 2}',
        "",
        [("get_weather", WEATHER), ("add", {"a": 1, "b": 2})],
    ),
    ("mistral", '我来算。[TOOL_CALLS]add{"a": 1, "b": 2}', "我来算。", [("add", {"a": 1, "b": 2})]),
    (  # v11+ with both special tokens dropped by the detokenizer
        "mistral",
        'get_weather{"city": "北京", "unit": "celsius"} add{"a": 1, "b": 2}',
        "",
        [("get_weather", WEATHER), ("add", {"a": 1, "b": 2})],
    ),
    ("mistral", "add 是加法。", "add 是加法。", []),
    ("mistral", "[TOOL_CALLS]nope[ARGS]{}", "[TOOL_CALLS]nope[ARGS]{}", []),
    ("mistral", '[TOOL_CALLS]add[ARGS]{"a": 1', '[TOOL_CALLS]add[ARGS]{"a": 1', []),
]


def _calls(parsed) -> list[tuple[str, dict]]:
    return [(c.name, json.loads(c.arguments)) for c in parsed.calls]


@pytest.mark.parametrize(("fmt", "text", "content", "calls"), CASES)
def test_parsers_whole_and_split_at_every_point(fmt, text, content, calls):
    whole = parse_text(make_parser("auto", fmt, NAMES, None), text)
    assert whole.content == content and _calls(whole) == calls
    for cut in range(len(text) + 1):
        parser = make_parser("auto", fmt, NAMES, None)
        events = parser.feed(text[:cut]) + parser.feed(text[cut:]) + parser.finish()
        split = fold(events)
        assert (split.content, _calls(split)) == (content, calls), cut


def test_streaming_one_character_at_a_time_releases_content_early():
    parser = HermesParser(NAMES)
    out = [parser.feed(ch) for ch in "你好<tool"]
    assert fold(out[0] + out[1]).content == "你好"  # not held back: it cannot start the tag
    assert all(not e for e in out[2:])  # "<tool" might be the tag: held


def test_forced_outputs():
    named = make_parser("named", "hermes", NAMES, "add")
    events = named.feed('{"a": ') + named.feed("1}") + named.finish()
    assert _calls(fold(events)) == [("add", {"a": 1})]
    assert len({e.id for e in events if hasattr(e, "id")}) == 1
    required = make_parser("required", "hermes", NAMES, None)
    text = '[{"name": "add", "arguments": {"a": 1}}, {"name": "get_weather", "arguments": {}}]'
    assert _calls(parse_text(required, text)) == [("add", {"a": 1}), ("get_weather", {})]


def test_format_detection_from_templates():
    assert detect_format("{% for m in messages %}<tool_call>{{ m }}</tool_call>") == "hermes"
    assert detect_format("[AVAILABLE_TOOLS]{{ tools }}[TOOL_CALLS]") == "mistral"
    assert detect_format('<|python_tag|>{"name": ...') == "llama3_json"
    assert detect_format("{{ '<|im_start|>' + m['content'] }}") == "hermes"
    assert detect_format(None) == "hermes"


def test_plans_and_messages_for_templates_without_tools():
    weather = Function("get_weather", "天气", {"type": "object", "properties": {}})
    plan = plan_tools([weather], "required", None, parallel=False)
    assert plan.calls_schema()["maxItems"] == 1
    with pytest.raises(InvalidRequest, match="not among the tools"):
        plan_tools([weather], None, "other", True)
    history = [
        {"role": "user", "content": "天气?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "北京"}}}
        ]},
        {"role": "tool", "content": "晴", "tool_call_id": "c1"},
    ]  # fmt: skip
    messages, tools = prepare_messages(history, plan, "{{ m['content'] }}")
    assert tools is None and messages[0]["role"] == "system"
    assert "get_weather" in messages[0]["content"]
    assert '"city": "北京"' in messages[2]["content"] and messages[3]["content"] == "晴"
    messages, tools = prepare_messages(history, plan, "{{ tools }} <tool_call>")
    assert messages == history and tools[0]["function"]["name"] == "get_weather"


HERMES_OUTPUT = '先查一下。<tool_call>\n{"name": "get_weather", "arguments": {"city": "北京"}}\n</tool_call>'


async def _engine_stream(pieces: list[str]):
    from gpt_service.engine.types import StreamDelta

    for piece in pieces:
        yield StreamDelta(text=piece, token_ids=[1])
    yield StreamDelta(finish_reason="stop", prompt_tokens=3, completion_tokens=len(pieces))


def _pieces(size: int) -> list[str]:
    return [HERMES_OUTPUT[i : i + size] for i in range(0, len(HERMES_OUTPUT), size)]


async def test_openai_chunks_carry_tool_call_deltas_the_sdk_accumulates():
    from openai.lib.streaming.chat._completions import ChatCompletionStreamState
    from openai.types.chat import ChatCompletionChunk

    from gpt_service.api.openai.stream import StreamMeta, chat_events

    plan = plan_tools([Function("get_weather")], "auto", None, True)
    for size in (1, 3, 7, 100):
        meta = StreamMeta("chatcmpl-x", 1, "m", 1, False, False, plan)
        state = ChatCompletionStreamState()
        async for event in chat_events([_engine_stream(_pieces(size))], meta):
            if event["data"] != "[DONE]":
                state.handle_chunk(ChatCompletionChunk.model_validate_json(event["data"]))
        choice = state.get_final_completion().choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content == "先查一下。"
        (call,) = choice.message.tool_calls
        assert call.id.startswith("call_") and call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == {"city": "北京"}


async def test_ollama_objects_carry_tool_calls():
    import time

    from gpt_service.api.ollama.stream import Turn, collect, run

    plan = plan_tools([Function("get_weather")], "auto", None, True)
    for size in (1, 5, 100):
        turn = Turn("m", True, time.perf_counter(), tool_plan=plan)
        final = await collect(run(turn, _engine_stream(_pieces(size))), is_chat=True)
        assert final["message"]["content"] == "先查一下。"
        assert final["message"]["tool_calls"] == [
            {"function": {"name": "get_weather", "arguments": {"city": "北京"}}}
        ]
