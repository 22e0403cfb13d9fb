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
)
from pydantic_core import PydanticCustomError

from gpt_service.api.openai.structured import (
    ResponseFormat,
)
from gpt_service.engine.types import Constraint, SamplingParams
from gpt_service.schema_base import LogsUnknownFields

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
