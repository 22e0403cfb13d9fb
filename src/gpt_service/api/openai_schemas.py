"""Request schemas of the OpenAI-compatible API (``/v1``), validated at the edge.

Harmless unknown fields (``user``, ``metadata``, ``store``...) are ignored, as OpenAI-style
servers do; fields that would change the answer in a way this server cannot honour
(legacy ``functions``, ``echo``, ``suffix``, ``logit_bias``...)
are refused with a 400 that names them, so a client never gets a silently wrong answer.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from gpt_service.api.openai_structured import (
    NamedToolChoice,
    ResponseFormat,
    ToolCallIn,
    ToolDef,
    tool_arguments,
)
from gpt_service.engine.types import Constraint, SamplingParams
from gpt_service.errors import InvalidRequest
from gpt_service.schema_base import LogsUnknownFields
from gpt_service.services.structured import Function, ToolPlan, plan_tools

MAX_STOP_STRINGS = 16
MAX_TOP_LOGPROBS = 20
# torch.Generator.manual_seed accepts this range; OpenAI's seed is any 64-bit integer.
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1
# Below these the float32 sampler divides by zero (inf/nan fails the whole engine step), and
# the result would be greedy anyway: treat such temperatures as 0, such top_p as this floor.
SAMPLING_EPS = 1e-5


def unsupported(why: str = "", what: str = "") -> PydanticCustomError:
    """A validation error whose message is exactly our text (no "Value error, " prefix).

    The error handler prefixes the field's name, so ``what`` is only for model-level checks.
    """
    message = (f"{what} is " if what else "") + "not supported by this server"
    return PydanticCustomError("unsupported", message + (f" ({why})" if why else ""))


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class SamplingRequest(LogsUnknownFields):
    """Fields shared by /v1/completions and /v1/chat/completions (incl. vLLM-style extras)."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(
        None, description="a loaded model, or 'model:adapter' (default: the current model)"
    )
    temperature: float = Field(1.0, ge=0.0, le=2.0, description="0 means greedy")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=16, description="choices per prompt (sampled in one batch)")
    stop: str | list[str] | None = Field(None, description="up to 16 stop strings")
    seed: int | None = Field(None, ge=SEED_MIN, le=SEED_MAX, description="choice i uses seed+i")
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    stream: bool = False
    stream_options: StreamOptions | None = None
    logit_bias: dict[str, float] | None = None
    # vLLM-style extras.
    top_k: int = Field(0, ge=-1, description="0 or -1 disables top-k")
    repetition_penalty: float = Field(1.0, ge=0.01, le=10.0)
    min_tokens: int = Field(0, ge=0)
    ignore_eos: bool = False

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> list[str] | None:
        stops = [value] if isinstance(value, str) else value
        if stops is None:
            return None
        if len(stops) > MAX_STOP_STRINGS:
            raise PydanticCustomError("too_many", f"at most {MAX_STOP_STRINGS} stop strings")
        if any(not s for s in stops):
            raise PydanticCustomError("empty", "stop strings must not be empty")
        return stops

    @field_validator("logit_bias")
    @classmethod
    def _no_logit_bias(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value:
            raise unsupported()
        return value

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    def sampling(
        self,
        max_tokens: int,
        logprobs: int | None,
        index: int = 0,
        constraint: Constraint | None = None,
    ) -> SamplingParams:
        """Engine parameters of choice ``index`` (its own seed, so the n choices differ)."""
        seed = None if self.seed is None else (self.seed + index) % (SEED_MAX + 1)
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=self.temperature if self.temperature >= SAMPLING_EPS else 0.0,
            top_p=max(self.top_p, SAMPLING_EPS),
            top_k=max(self.top_k, 0),
            repetition_penalty=self.repetition_penalty,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            stop=tuple(self.stop or ()),  # type: ignore[arg-type]  # normalised to a list
            seed=seed,
            min_tokens=self.min_tokens,
            ignore_eos=self.ignore_eos,
            logprobs=logprobs,
            constraint=constraint,
        )


class CompletionRequest(SamplingRequest):
    prompt: str | list[str] | list[int] | list[list[int]] = Field(
        ..., description="a string, a list of strings, token ids, or a list of token-id lists"
    )
    max_tokens: int | None = Field(
        None, ge=1, description="new tokens per choice (default 16, as OpenAI's)"
    )
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = Field(None, ge=1)
    response_format: ResponseFormat | None = Field(
        None, description="json_object / json_schema: constrained output (extension, as vLLM)"
    )

    @field_validator("prompt")
    @classmethod
    def _prompts_present(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise PydanticCustomError("empty", "prompt must not be empty")
        if isinstance(value, list) and any(isinstance(p, list) and not p for p in value):
            raise PydanticCustomError("empty", "token-id prompts must not be empty")
        return value

    @field_validator("echo")
    @classmethod
    def _no_echo(cls, value: bool) -> bool:
        if value:
            raise unsupported("the prompt is not echoed")
        return value

    @field_validator("suffix")
    @classmethod
    def _no_suffix(cls, value: str | None) -> str | None:
        if value:
            raise unsupported("no fill-in-the-middle mode")
        return value

    @field_validator("best_of")
    @classmethod
    def _best_of(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and value != info.data.get("n", 1):
            raise unsupported("no server-side ranking", what="best_of other than n")
        return value

    def prompts(self) -> list[str] | list[list[int]]:
        """The prompt as a list of prompts (strings or token-id lists)."""
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if p and isinstance(p[0], int):
            return [p]  # type: ignore[list-item]  # one token-id prompt
        return p  # type: ignore[return-value]


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


class EmbeddingRequest(LogsUnknownFields):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, description="must equal the model's size")
    normalize: bool = Field(True, description="L2-normalise each vector (extension)")

    @field_validator("input")
    @classmethod
    def _strings_only(cls, value: Any) -> list[str]:
        texts = [value] if isinstance(value, str) else value
        if not texts:
            raise PydanticCustomError("empty", "input must not be empty")
        if not all(isinstance(t, str) for t in texts):
            raise unsupported("send text", what="token-id input")
        if any(not t.strip() for t in texts):
            raise PydanticCustomError("empty", "input strings must not be empty")
        return texts

    @property
    def texts(self) -> list[str]:
        return self.input  # type: ignore[return-value]  # normalised by the validator
