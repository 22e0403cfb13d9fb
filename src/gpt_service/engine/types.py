"""Torch-free request/response types of the engine (importable by the API layer)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

FinishReason = Literal["stop", "length", "cancelled", "error"]
# Temperatures below this are greedy: dividing float32 logits by them overflows.
MIN_TEMPERATURE = 1e-5


@dataclass(frozen=True, slots=True)
class Constraint:
    """What a constrained row's output must match: a JSON schema (as JSON text) or a Lark
    grammar (llguidance's dialect, which can embed ``%json{...}`` schemas)."""

    kind: Literal["json_schema", "lark"]
    spec: str

    @classmethod
    def json_schema(cls, schema: dict | bool) -> Constraint:
        return cls("json_schema", json.dumps(schema, ensure_ascii=False, sort_keys=False))


@dataclass(frozen=True, slots=True)
class SamplingParams:
    max_tokens: int = 512
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 disables top-k
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    min_tokens: int = 0
    ignore_eos: bool = False
    logprobs: int | None = None  # top-N logprobs per generated token (None: off)
    constraint: Constraint | None = None  # structured output (see engine/grammar.py)

    @property
    def is_greedy(self) -> bool:
        return self.temperature < MIN_TEMPERATURE

    def validate(self) -> None:
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k < 0:
            raise ValueError("top_k must be >= 0")
        if self.repetition_penalty <= 0:
            raise ValueError("repetition_penalty must be > 0")
        if self.min_tokens > self.max_tokens:
            raise ValueError("min_tokens must be <= max_tokens")


@dataclass(slots=True)
class TokenLogprob:
    token: str
    logprob: float
    top: list[tuple[str, float]] = field(default_factory=list)


@dataclass(slots=True)
class StreamDelta:
    """One increment of a generation: new text (never a broken character) and/or the end."""

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None

    @property
    def is_final(self) -> bool:
        return self.finish_reason is not None


@dataclass(slots=True)
class Completion:
    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    first_token_seconds: float | None = None
    total_seconds: float = 0.0


@dataclass(slots=True)
class ModelInfo:
    name: str
    path: str
    type: str  # "local"
    device: str
    dtype: str
    architecture: str
    num_parameters: int
    context_length: int
    lora_adapter: str | None
    adapters: list[str]
    loaded_at: str
    is_current: bool = False
    quantization: str = "none"  # "int8": weight-only int8 linear layers (engine/quantize.py)
