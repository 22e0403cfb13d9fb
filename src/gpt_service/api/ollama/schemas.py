"""Request bodies of the Ollama-compatible ``/api`` and the mapping of ``options`` to sampling.

Field names follow Ollama's API; unknown fields and options are accepted and ignored, as
Ollama does, so clients written for newer Ollama versions keep working.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from gpt_service.engine.types import Constraint, SamplingParams
from gpt_service.errors import InvalidRequest
from gpt_service.schema_base import LogsUnknownFields
from gpt_service.services.structured import Function, ToolPlan, plan_tools

# Ollama's defaults where ours differ (llama.cpp's sampling defaults).
DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_P = 0.9
DEFAULT_TOP_K = 40
DEFAULT_REPEAT_PENALTY = 1.1

MIN_DIVISOR = 1e-3  # temperature and repeat_penalty divide the logits

_DURATION = re.compile(r"^[+-]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")


class OllamaOptions(BaseModel):
    """The Modelfile parameters that map to our sampling; others (num_ctx, mirostat,
    min_p, ...) are accepted and ignored."""

    # Finite, bounded numbers only: logits divided by a 1e-300 temperature or penalty, a NaN,
    # or an int64 overflow would fail the engine step this request shares with others.
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    num_predict: int | None = Field(None, description="max new tokens; <= 0: up to the cap")
    temperature: float | None = Field(None, ge=0.0, le=100.0, description="0 means greedy")
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    top_k: int | None = Field(None, ge=-(2**31), le=2**31, description="<= 0: off")
    repeat_penalty: float | None = Field(None, ge=0.0, le=100.0, description="0 or 1: off")
    presence_penalty: float | None = Field(None, ge=-100.0, le=100.0)
    frequency_penalty: float | None = Field(None, ge=-100.0, le=100.0)
    stop: list[str] | str | None = None
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1, description="negative: random")
    min_tokens: int | None = Field(None, ge=0, description="gpt-service extension")
    ignore_eos: bool | None = Field(None, description="gpt-service extension")

    @model_validator(mode="after")
    def _not_vanishing(self) -> OllamaOptions:
        for name in ("temperature", "repeat_penalty"):
            value = getattr(self, name)
            if value is not None and 0 < value < MIN_DIVISOR:
                raise ValueError(f"{name} must be 0 or at least {MIN_DIVISOR}")
        return self

    def sampling(
        self,
        max_tokens_cap: int,
        logprobs: int | None = None,
        constraint: Constraint | None = None,
    ) -> SamplingParams:
        num_predict = self.num_predict if self.num_predict and self.num_predict > 0 else None
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        top_p = self.top_p if self.top_p is not None else DEFAULT_TOP_P
        repeat = self.repeat_penalty if self.repeat_penalty is not None else DEFAULT_REPEAT_PENALTY
        top_k = self.top_k if self.top_k is not None else DEFAULT_TOP_K
        return SamplingParams(
            # Ollama bounds generation by the context, not by an error: clamp to our cap.
            max_tokens=min(num_predict or max_tokens_cap, max_tokens_cap),
            temperature=self.temperature if self.temperature is not None else DEFAULT_TEMPERATURE,
            top_p=top_p or 1.0,  # llama.cpp treats 0 as "off"
            top_k=max(top_k, 0),
            repetition_penalty=repeat or 1.0,
            presence_penalty=self.presence_penalty or 0.0,
            frequency_penalty=self.frequency_penalty or 0.0,
            stop=tuple(s for s in stop if s),
            seed=self.seed if self.seed is not None and self.seed >= 0 else None,
            min_tokens=self.min_tokens or 0,
            ignore_eos=bool(self.ignore_eos),
            logprobs=logprobs,
            constraint=constraint,
        )


def is_zero_keep_alive(value: float | str | None) -> bool:
    """True for ``0``, ``"0"``, ``"0s"``, ``"0m"``... (Go durations or seconds)."""
    if value is None:
        return False
    if isinstance(value, int | float):
        return value == 0
    text = value.strip()
    if not text:
        return False  # unset, as some clients send it
    if _NUMBER.match(text):
        return float(text) == 0
    if not _DURATION.match(text):
        raise InvalidRequest(f"keep_alive: invalid duration '{value}' (examples: 0, '5m', '1h')")
    return all(float(n) == 0 for n in re.findall(r"\d+(?:\.\d*)?|\.\d+", text))


class _NullIsDefault(LogsUnknownFields):
    """Go clients send ``null`` for unset pointers (``"stream": null``): that means default."""

    model_config = ConfigDict(extra="ignore")

    @field_validator("stream", "options", "raw", mode="before", check_fields=False)
    @classmethod
    def _null_is_default(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name:
            return cls.model_fields[info.field_name].get_default(call_default_factory=True)
        return value


class OllamaRequest(_NullIsDefault):
    """Fields every generation request shares."""

    model: str = Field("", description="model name, 'name' or 'name:tag' (tag = LoRA adapter)")
    name: str | None = Field(None, description="older clients' spelling of model")
    stream: bool = Field(True, description="NDJSON stream (default) or one object")
    options: OllamaOptions = Field(default_factory=OllamaOptions)
    keep_alive: float | str | None = Field(None, description="0 unloads the model afterwards")
    format: str | dict[str, Any] | None = Field(
        None, description='"json" (any JSON object) or a JSON schema the output must follow'
    )
    think: bool | str | None = Field(None, description="not supported")
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)

    @model_validator(mode="after")
    def _name_alias(self) -> OllamaRequest:
        if not self.model and self.name:
            self.model = self.name
        if not self.model.strip():
            raise ValueError("model is required")
        return self

    @property
    def unloads(self) -> bool:
        return is_zero_keep_alive(self.keep_alive)

    @property
    def num_logprobs(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None

    def constraint(self) -> Constraint | None:
        """The grammar of ``format``: ``"json"`` or a JSON schema (as Ollama's structured
        outputs); enforced token by token by the engine."""
        if not self.format:
            return None
        if self.format == "json":
            return Constraint.json_schema({"type": "object"})
        if isinstance(self.format, dict):
            return Constraint.json_schema(self.format)
        raise InvalidRequest(f"format: '{self.format}' is neither \"json\" nor a JSON schema")

    def check_supported(self) -> None:
        self.constraint()
        if self.think:
            raise InvalidRequest(f"model '{self.model}' does not support thinking")


class GenerateBody(OllamaRequest):
    prompt: str | None = None
    system: str | None = None
    raw: bool = False
    context: list[int] | None = Field(None, description="token ids returned by a previous call")
    suffix: str | None = Field(None, description="not supported")
    template: str | None = Field(None, description="not supported")
    images: list[str] | None = Field(None, description="not supported (text-only models)")

    def check_supported(self) -> None:
        super().check_supported()
        if self.images:
            raise InvalidRequest("images are not supported: the models here are text-only")
        if self.suffix:
            raise InvalidRequest("suffix (fill-in-the-middle) is not supported")
        if self.template:
            raise InvalidRequest("template overrides are not supported; use raw with a full prompt")


class ToolCallFunction(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolCallIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    function: ToolCallFunction


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    images: list[str] | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_name: str | None = None

    def to_engine(self) -> dict[str, Any]:
        """As chat templates take it (calls with their arguments object, tool results)."""
        message: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [
                {"type": "function", "function": c.function.model_dump()} for c in self.tool_calls
            ]
        if self.role == "tool" and self.tool_name:
            message["name"] = self.tool_name
        return message


class ToolFunction(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(..., pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None


class ToolIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["function"] = "function"
    function: ToolFunction


class ChatBody(OllamaRequest):
    messages: list[ChatMessageIn] = Field(default_factory=list)
    tools: list[ToolIn] | None = Field(None, max_length=128)

    def tool_plan(self) -> ToolPlan | None:
        """Ollama's tools are always "auto": the model's own call format is parsed."""
        functions = [
            Function(t.function.name, t.function.description, t.function.parameters)
            for t in self.tools or []
        ]
        return plan_tools(functions, "auto", None, True)

    def check_supported(self) -> None:
        super().check_supported()
        if any(m.images for m in self.messages):
            raise InvalidRequest("images are not supported: the models here are text-only")


class ModelBody(_NullIsDefault):
    """``/api/show`` and ``/api/pull``."""

    model: str = ""
    name: str | None = None
    stream: bool = True
    verbose: bool = False

    @model_validator(mode="after")
    def _name_alias(self) -> ModelBody:
        if not self.model and self.name:
            self.model = self.name
        if not self.model.strip():
            raise ValueError("model is required")
        return self
