"""Request schema of ``/v1/chat/completions``: messages (text parts only), tools and
tool_choice, response_format; fields this server cannot honour are refused by name."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from gpt_service.api.openai.schemas import MAX_TOP_LOGPROBS, SamplingRequest, unsupported
from gpt_service.api.openai.structured import (
    NamedToolChoice,
    ResponseFormat,
    ToolCallIn,
    ToolDef,
    tool_arguments,
)
from gpt_service.engine.types import Constraint
from gpt_service.errors import InvalidRequest
from gpt_service.services.structured import Function, ToolPlan, plan_tools


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str
    text: str | None = None

    @model_validator(mode="after")
    def _text_only(self) -> ContentPart:
        if self.type != "text" or self.text is None:
            raise unsupported("only text", what=f"content part type '{self.type}'")
        return self


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _text_parts(cls, value: Any) -> Any:
        # Checked before the union so the message names the part, not each union member.
        for part in value if isinstance(value, list) else ():
            kind = part.get("type") if isinstance(part, dict) else None
            if kind != "text":
                raise unsupported("only text", what=f"content part type '{kind}'")
        return value

    def to_engine(self) -> dict[str, Any]:
        """The message as chat templates take it ("developer" is a system role; tool-call
        arguments as objects, which is what templates print with ``tojson``)."""
        content = self.content
        if isinstance(content, list):
            content = "".join(part.text or "" for part in content)
        role = "system" if self.role == "developer" else self.role
        message: dict[str, Any] = {"role": role, "content": content or ""}
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": tool_arguments(call)},
                }
                for call in self.tool_calls
            ]
        if self.role == "tool":
            message["tool_call_id"] = self.tool_call_id or ""
            if self.name:
                message["name"] = self.name
        return message


class ChatCompletionRequest(SamplingRequest):
    messages: list[ChatMessage] = Field(..., min_length=1)
    max_tokens: int | None = Field(None, ge=1, description="deprecated alias")
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    response_format: ResponseFormat | None = None
    tools: list[ToolDef] | None = Field(None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool = True
    functions: list[Any] | None = None
    function_call: Any = None
    audio: Any = None
    modalities: list[str] | None = None

    @field_validator("functions")
    @classmethod
    def _no_functions(cls, value: list[Any] | None) -> list[Any] | None:
        if value:
            raise unsupported("use tools")
        return value

    @field_validator("function_call")
    @classmethod
    def _no_function_call(cls, value: Any) -> Any:
        if value not in (None, "none", "auto"):
            raise unsupported("use tool_choice")
        return value

    @field_validator("audio")
    @classmethod
    def _no_audio(cls, value: Any) -> Any:
        if value is not None:
            raise unsupported("text only")
        return value

    @field_validator("modalities")
    @classmethod
    def _text_modality(cls, value: list[str] | None) -> list[str] | None:
        if value and any(m != "text" for m in value):
            raise unsupported("text only")
        return value

    @field_validator("top_logprobs")
    @classmethod
    def _needs_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value and not info.data.get("logprobs"):
            raise PydanticCustomError("invalid", "top_logprobs requires logprobs to be true")
        return value

    @property
    def num_logprobs(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None

    def engine_messages(self) -> list[dict[str, Any]]:
        return [m.to_engine() for m in self.messages]

    def tool_plan(self) -> ToolPlan | None:
        functions = [
            Function(t.function.name, t.function.description, t.function.parameters)
            for t in self.tools or []
        ]
        choice = self.tool_choice
        forced = choice.function.name if isinstance(choice, NamedToolChoice) else None
        plain = None if isinstance(choice, NamedToolChoice) else choice
        return plan_tools(functions, plain, forced, self.parallel_tool_calls)

    def constraint(self, plan: ToolPlan | None) -> Constraint | None:
        """The grammar of this request: a forced tool call's, or the response format's."""
        forced = plan.constraint() if plan is not None else None
        own = self.response_format.constraint() if self.response_format else None
        if forced is not None and own is not None:
            raise InvalidRequest(
                "response_format: cannot be combined with tool_choice 'required' or a named "
                "function (the call's arguments follow the function's parameters)"
            )
        return forced or own
