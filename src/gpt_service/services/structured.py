"""Structured output and tools, API-neutral: the grammar constraints of ``tool_choice`` and the
conversation as a chat template expects it (``tools=``, assistant ``tool_calls``, ``tool``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from gpt_service.engine.types import Constraint
from gpt_service.errors import InvalidRequest
from gpt_service.services.tool_calls import (
    HERMES_CLOSE,
    HERMES_OPEN,
    ToolFormat,
    ToolParser,
    detect_format,
    make_parser,
)

JSON_OBJECT: dict[str, Any] = {"type": "object"}
ToolMode = Literal["none", "auto", "required", "named"]


@dataclass(frozen=True)
class Function:
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None

    def openai(self) -> dict[str, Any]:
        """The definition as chat templates take it (``tools=`` of apply_chat_template)."""
        function: dict[str, Any] = {"name": self.name, "parameters": self.schema}
        if self.description:
            function["description"] = self.description
        return {"type": "function", "function": function}

    @property
    def schema(self) -> dict[str, Any]:
        return self.parameters or JSON_OBJECT


@dataclass
class ToolPlan:
    """How one chat request uses tools: the mode, the format parsed, the grammar imposed."""

    functions: list[Function]
    mode: ToolMode
    forced: str | None = None  # the named function
    parallel: bool = True
    fmt: ToolFormat = "hermes"

    @property
    def names(self) -> set[str]:
        return {f.name for f in self.functions}

    def constraint(self) -> Constraint | None:
        if self.mode == "named":
            function = next(f for f in self.functions if f.name == self.forced)
            return Constraint.json_schema(function.schema)
        if self.mode == "required":
            return Constraint.json_schema(self.calls_schema())
        return None

    def calls_schema(self) -> dict[str, Any]:
        """An array of ``{"name", "arguments"}`` where each name fixes its arguments' schema."""
        items = [
            {
                "type": "object",
                "properties": {"name": {"const": f.name}, "arguments": f.schema},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
            for f in self.functions
        ]
        schema: dict[str, Any] = {"type": "array", "items": {"anyOf": items}, "minItems": 1}
        if not self.parallel:
            schema["maxItems"] = 1
        return schema

    def parser(self) -> ToolParser | None:
        if self.mode == "none":
            return None
        return make_parser(self.mode, self.fmt, self.names, self.forced)

    def template_tools(self) -> list[dict[str, Any]] | None:
        return [f.openai() for f in self.functions] if self.mode != "none" else None


def plan_tools(
    functions: list[Function], choice: str | None, forced: str | None, parallel: bool
) -> ToolPlan | None:
    """``choice`` is none/auto/required, or None with ``forced`` naming a function."""
    if not functions:
        if forced or choice == "required":
            raise InvalidRequest("tool_choice: names a tool but no tools were given")
        return None
    if forced is not None:
        if forced not in {f.name for f in functions}:
            raise InvalidRequest(f"tool_choice: function '{forced}' is not among the tools")
        return ToolPlan(functions, "named", forced, parallel)
    mode: ToolMode = choice if choice in ("none", "required") else "auto"  # type: ignore[assignment]
    return ToolPlan(functions, mode, None, parallel)


def tool_system_prompt(functions: list[Function]) -> str:
    """For templates that show no tools: describe them in the Hermes format we then parse."""
    listing = "\n".join(
        json.dumps(f.openai(), ensure_ascii=False, separators=(",", ":")) for f in functions
    )
    return (
        "You may call one or more functions to assist with the user query.\n"
        f"Function signatures:\n<tools>\n{listing}\n</tools>\n"
        "For each call, return a JSON object with the function name and arguments within "
        f'{HERMES_OPEN}{HERMES_CLOSE} tags:\n{HERMES_OPEN}\n{{"name": <function-name>, '
        f'"arguments": <args-json-object>}}\n{HERMES_CLOSE}'
    )


def prepare_messages(
    messages: list[dict[str, Any]], plan: ToolPlan | None, chat_template: str | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """Messages and ``tools=`` for the template. A template that knows tools gets them as is;
    for one that does not, the tools go into a system message and past calls into the text."""
    template = chat_template or ""
    if plan is not None:
        plan.fmt = detect_format(template)
    knows_tools = "tools" in template
    if knows_tools:
        return messages, plan.template_tools() if plan else None
    out = [_flatten(m) for m in messages]
    if plan is not None and plan.mode != "none":
        prompt = tool_system_prompt(plan.functions)
        if out and out[0]["role"] == "system":
            out[0] = {**out[0], "content": f"{out[0]['content']}\n\n{prompt}"}
        else:
            out.insert(0, {"role": "system", "content": prompt})
    return out, None


def _flatten(message: dict[str, Any]) -> dict[str, Any]:
    """A message with tool calls as Hermes text, for templates that only print content."""
    calls = message.get("tool_calls")
    if not calls:
        return {"role": message["role"], "content": message.get("content") or ""}
    parts = [message.get("content") or ""]
    for call in calls:
        function = call["function"]
        body = {"name": function["name"], "arguments": function.get("arguments", {})}
        parts.append(f"{HERMES_OPEN}\n{json.dumps(body, ensure_ascii=False)}\n{HERMES_CLOSE}")
    return {"role": message["role"], "content": "\n".join(p for p in parts if p)}
