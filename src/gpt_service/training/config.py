"""What a training job is: the request fields (validated at submit) and the statuses.

Torch-free on purpose: the HTTP layer uses ``TrainJobSpec`` as its request body.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from gpt_service.schema_base import StrictBody
from gpt_service.store.records import STOPPED, JobKind, JobRecord, JobStatus

DATASET_FORMATS = ("auto", "json", "jsonl", "csv")
DatasetFormat = Literal["auto", "json", "jsonl", "csv"]
MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,127}$")
SCHEDULERS = Literal["linear", "cosine", "constant", "constant_with_warmup"]

# Defaults tuned on the bundled demo task (demo_data/): they teach the demo model its task in
# well under a minute on 2 CPU cores (held-out exact match 0% -> ~81% on meow, ~71% on note).
# Models of billions of parameters usually want a learning rate of 1e-4 to 2e-4.
DEFAULT_EPOCHS = 3
DEFAULT_BATCH_SIZE = 8
DEFAULT_LEARNING_RATE = 2e-3


# One lifecycle for every kind of job (``store.records``); re-exported for the training code.
__all__ = ["STOPPED", "TRAIN", "JobStatus", "TrainJob", "TrainJobSpec", "TrainParams"]


class TrainJobSpec(StrictBody):
    """``POST /train`` body: API.md's fields plus the LoRA/trainer options users expect."""

    base_model: str = Field(
        ...,
        min_length=1,
        description="a loaded model's name, a local model directory or a hub id",
        examples=["demo"],
    )
    dataset_path: str = Field(
        ...,
        min_length=1,
        description="json/jsonl/csv file, relative to the data directory or the bundled demo data",
        examples=["demo_train.jsonl"],
    )
    output_dir: str | None = Field(
        None,
        description="adapter directory inside the data directory (default: models/lora/<job id>)",
        examples=["models/checkpoints/task1"],
    )
    num_epochs: float = Field(DEFAULT_EPOCHS, gt=0, le=1000)
    batch_size: int = Field(DEFAULT_BATCH_SIZE, ge=1, le=1024, description="per process")
    learning_rate: float = Field(DEFAULT_LEARNING_RATE, gt=0, le=1)
    dataset_format: DatasetFormat = Field("auto", description="auto picks by file extension")
    lora_r: int = Field(16, ge=1, le=1024)
    lora_alpha: int = Field(32, ge=1, le=4096)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | None = Field(
        None, description="module names to adapt (default: all linear layers)"
    )
    modules_to_save: list[str] | None = Field(
        None,
        description="modules trained in full and saved with the adapter, e.g. "
        '["embed_tokens", "lm_head"] when a task needs tokens the base model rarely emits',
        examples=[["embed_tokens", "lm_head"]],
    )
    trainable_token_indices: list[int] | dict[str, list[int]] | None = Field(
        None,
        description="token ids whose embedding rows train (a list targets the input embedding; "
        'or {"<embedding module>": [ids]}): new/rare tokens without training the whole matrix',
        examples=[[5, 42]],
    )
    max_seq_length: int = Field(512, ge=8, le=131072, description="longer examples are cut")
    gradient_accumulation_steps: int = Field(1, ge=1, le=1024)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    lr_scheduler_type: SCHEDULERS = "linear"
    eval_split: float = Field(0.0, ge=0, le=0.5, description="fraction held out for eval_loss")
    save_steps: int = Field(50, ge=1, description="checkpoint every this many optimizer steps")
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps")
    seed: int = Field(42, ge=0)
    num_processes: int = Field(
        1, ge=1, le=64, description="processes per node; >1 runs distributed data-parallel"
    )
    num_nodes: int = Field(
        1,
        ge=1,
        le=64,
        description="machines: >1 waits for the others to join (`gpt-service join <job id>`)",
    )
    overwrite: bool = Field(False, description="replace an adapter already in output_dir")
    load_on_completion: bool = Field(False, description="serve the adapter once trained")
    served_model_name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$",
        description="name to load the result under when the base is not loaded "
        "(default: <base>-<job id prefix>)",
    )

    @field_validator("target_modules")
    @classmethod
    def _modules(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or any(not m.strip() for m in value)):
            raise ValueError("target_modules must be a non-empty list of module names")
        return value

    @field_validator("modules_to_save")
    @classmethod
    def _saved_modules(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or any(not MODULE_NAME.match(m) for m in value)):
            raise ValueError(
                "modules_to_save must be a non-empty list of module names such as 'lm_head'"
            )
        return value

    @field_validator("trainable_token_indices")
    @classmethod
    def _token_indices(
        cls, value: list[int] | dict[str, list[int]] | None
    ) -> list[int] | dict[str, list[int]] | None:
        if value is None:
            return None
        lists = value.values() if isinstance(value, dict) else [value]
        if not lists or any(not ids or min(ids) < 0 for ids in lists):
            raise ValueError("trainable_token_indices needs non-empty lists of token ids >= 0")
        if isinstance(value, dict) and any(not MODULE_NAME.match(k) for k in value):
            raise ValueError("trainable_token_indices keys must be embedding module names")
        return value

    def max_token_index(self) -> int | None:
        ids = self.trainable_token_indices
        if ids is None:
            return None
        return max(max(v) for v in (ids.values() if isinstance(ids, dict) else [ids]))

    @model_validator(mode="after")
    def _served_name(self) -> TrainJobSpec:
        if self.served_model_name is not None and not self.load_on_completion:
            raise ValueError("served_model_name needs load_on_completion: true")
        return self


class TrainParams(BaseModel):
    """A training job's row parameters: the request and what submit resolved it to."""

    model_config = {"extra": "ignore"}  # rows written by older versions carry owner_pid

    spec: TrainJobSpec
    base_model_path: str
    dataset_file: str
    num_examples: int | None = None
    output_dir: str
    output_path: str
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    resume: bool = False
    attempts: int = 0
    rendezvous: str | None = Field(None, description="host:port of a multi-node job's c10d store")


class LossPoint(BaseModel):
    step: int
    epoch: float = 0.0
    loss: float | None = None
    eval_loss: float | None = None


class TrainProgress(BaseModel):
    """What the worker's rank 0 reports after each logged step."""

    model_config = {"extra": "ignore"}

    progress: float | None = None
    current_step: int = 0
    total_steps: int | None = None
    current_epoch: int = 0
    epoch: float = 0.0
    total_epochs: float | None = None
    loss: float | None = None
    learning_rate: float | None = None
    eval_loss: float | None = None
    eta_seconds: float | None = None
    stage: str | None = None
    loss_history: list[LossPoint] = Field(default_factory=list)
    eval_history: list[LossPoint] = Field(default_factory=list)


TRAIN: JobKind[TrainParams, TrainProgress] = JobKind(
    "train", TrainParams, TrainProgress, writes_to=lambda params: params.output_path
)
TrainJob = JobRecord[TrainParams, TrainProgress]
