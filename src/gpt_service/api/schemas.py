"""Request/response schemas of the native API (fields as in API.md, plus documented extras)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from gpt_service.api.openai_structured import ResponseFormat
from gpt_service.engine.types import SamplingParams
from gpt_service.schema_base import StrictBody


class SamplingFields(StrictBody):
    model_name: str | None = Field(
        None, description="loaded model (default: current); 'name:adapter' picks a LoRA adapter"
    )
    max_tokens: int = Field(512, ge=1, description="maximum new tokens")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="0 means greedy")
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0, description="0 disables top-k")
    repetition_penalty: float = Field(1.0, gt=0.0, le=10.0)
    stop: list[str] | None = Field(None, description="stop strings (not included in the text)")
    seed: int | None = Field(None, ge=0, description="makes sampling reproducible")
    min_tokens: int = Field(0, ge=0, description="end-of-sequence is blocked before this many")
    ignore_eos: bool = Field(False, description="keep generating past end-of-sequence")
    use_ollama: bool = Field(False, description="send the request to the Ollama upstream")
    response_format: ResponseFormat | None = Field(
        None,
        description='structured output, as OpenAI\'s: {"type": "json_object"} or {"type": '
        '"json_schema", "json_schema": {"name": ..., "schema": {...}}}; the output is '
        "guaranteed to parse and match the schema (finish_reason length aside)",
    )

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    def sampling(self) -> SamplingParams:
        return SamplingParams(
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            repetition_penalty=self.repetition_penalty,
            stop=tuple(self.stop or ()),
            seed=self.seed,
            min_tokens=self.min_tokens,
            ignore_eos=self.ignore_eos,
            constraint=self.response_format.constraint() if self.response_format else None,
        )


class GenerateRequest(SamplingFields):
    prompt: str = Field(..., min_length=1, examples=["你好，请介绍一下人工智能。"])

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("prompt must not be blank")
        return value


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool"]
    content: str


class ChatRequest(SamplingFields):
    messages: list[ChatMessage] = Field(..., min_length=1)


class BatchRequest(SamplingFields):
    prompts: list[str] = Field(
        ..., min_length=1, examples=[["什么是机器学习？", "什么是深度学习？"]]
    )

    @field_validator("prompts")
    @classmethod
    def _no_blank(cls, value: list[str]) -> list[str]:
        for i, prompt in enumerate(value):
            if not prompt.strip():
                raise ValueError(f"prompt {i} is blank")
        return value


class GenerateResponse(BaseModel):
    text: str
    model_name: str
    tokens_generated: int
    prompt_tokens: int
    finish_reason: str
    generation_time: float = Field(..., description="seconds")


class ChatResponse(GenerateResponse):
    message: ChatMessage


class BatchResponse(BaseModel):
    results: list[GenerateResponse]
    model_name: str
    total_count: int
    total_tokens_generated: int


class LoadModelRequest(StrictBody):
    model_name: str = Field(..., min_length=1, examples=["demo"])
    model_path: str | None = Field(
        None,
        description="local directory (relative to the data directory) or a hub id; default: model_name",
    )
    lora_adapter: str | None = Field(None, description="LoRA adapter directory")
    backend: Literal["local", "openai"] = Field(
        "local", description="local engine, or a remote OpenAI-compatible engine (vLLM...)"
    )
    base_url: str | list[str] | None = Field(
        None, description="backend openai: the upstream's URL ending in /v1, or one per replica"
    )
    remote_model: str | None = Field(None, description="backend openai: the upstream's model id")
    api_key: str | None = Field(None, description="backend openai: key sent to the upstream")

    @model_validator(mode="after")
    def _remote_fields(self) -> LoadModelRequest:
        if self.backend == "openai":
            if not self.base_url or not self.remote_model:
                raise ValueError("backend 'openai' needs base_url and remote_model")
            if self.lora_adapter:
                raise ValueError(
                    "a remote model takes adapters through POST /models/{name}/adapters"
                )
        elif self.base_url or self.remote_model or self.api_key:
            raise ValueError("base_url, remote_model and api_key need backend 'openai'")
        return self

    @property
    def base_urls(self) -> list[str]:
        return [self.base_url] if isinstance(self.base_url, str) else list(self.base_url or [])


class ReplicaState(BaseModel):
    url: str
    healthy: bool
    outstanding: int
    requests: int
    errors: int
    mean_latency_ms: float | None
    last_error: str | None


class ModelSummary(BaseModel):
    name: str
    type: str
    backend: str = "local"
    device: str
    lora_adapter: str | None
    is_current: bool


class ModelDetail(ModelSummary):
    path: str
    dtype: str
    architecture: str
    num_parameters: int
    context_length: int
    adapters: list[str]
    loaded_at: str
    num_running: int
    num_waiting: int
    remote_model: str | None = None
    replicas: list[ReplicaState] = Field(default_factory=list)
    healthy: bool = True


class ModelListResponse(BaseModel):
    models: list[ModelSummary]
    current_model: str | None
    total_count: int


class StatusResponse(BaseModel):
    status: str
    message: str
    model: ModelDetail | None = None
    current_model: str | None = None
