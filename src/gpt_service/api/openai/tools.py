"""Tool calls in ``/v1/chat/completions`` answers: the parsed output as ``message.tool_calls``
and, when streaming, as OpenAI's ``delta.tool_calls`` chunks."""

from __future__ import annotations

from gpt_service.api.openai.format import (
    ChatFinish,
    ChatMessageOut,
    FunctionCallOut,
    FunctionDelta,
    ToolCallDelta,
    ToolCallOut,
    finish_reason,
)
from gpt_service.engine.types import FinishReason
from gpt_service.services.structured import ToolPlan
from gpt_service.services.tool_calls import CallArgs, CallStart, Content, Event, parse_text


def chat_finish(reason: FinishReason | None, plan: ToolPlan | None, has_calls: bool) -> ChatFinish:
    """OpenAI answers ``tool_calls`` when the model chose to call (auto, required); a named
    function is the caller's choice and ends with ``stop``."""
    base = finish_reason(reason) or "stop"
    if has_calls and base == "stop" and plan is not None and plan.mode != "named":
        return "tool_calls"
    return base


def chat_message(text: str, plan: ToolPlan | None) -> ChatMessageOut:
    parser = plan.parser() if plan is not None else None
    if parser is None:
        return ChatMessageOut(content=text)
    parsed = parse_text(parser, text)
    if not parsed.calls:
        return ChatMessageOut(content=parsed.content)
    calls = [
        ToolCallOut(id=c.id, function=FunctionCallOut(name=c.name, arguments=c.arguments))
        for c in parsed.calls
    ]
    return ChatMessageOut(content=parsed.content or None, tool_calls=calls)


def split_events(events: list[Event]) -> tuple[str, list[ToolCallDelta]]:
    """Content text and tool-call deltas (a call's start and arguments coalesced)."""
    content = ""
    deltas: list[ToolCallDelta] = []
    for event in events:
        if isinstance(event, Content):
            content += event.text
        elif isinstance(event, CallStart):
            function = FunctionDelta(name=event.name, arguments="")
            deltas.append(ToolCallDelta(index=event.index, id=event.id, function=function))
        elif isinstance(event, CallArgs):
            if deltas and deltas[-1].index == event.index:
                deltas[-1].function.arguments += event.text
            else:
                function = FunctionDelta(arguments=event.text)
                deltas.append(ToolCallDelta(index=event.index, function=function))
    return content, deltas
