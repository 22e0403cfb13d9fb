"""What a training job is: the request fields (validated at submit) and the statuses.

Torch-free on purpose: the HTTP layer uses ``TrainJobSpec`` as its request body.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gpt_service.schema_base import StrictBody

DATASET_FORMATS = ("auto", "json", "jsonl", "csv")
DatasetFormat = Literal["auto", "json", "jsonl", "csv"]
SCHEDULERS = Literal["linear", "cosine", "constant", "constant_with_warmup"]

# Defaults tuned on the bundled demo task (demo_data/): they teach the demo model its task in
# well under a minute on 2 CPU cores (held-out exact match 0% -> 85-91%; rank 8: ~38%).
# Models of billions of parameters usually want a learning rate of 1e-4 to 2e-4.
DEFAULT_EPOCHS = 3
DEFAULT_BATCH_SIZE = 8
DEFAULT_LEARNING_RATE = 2e-3


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def is_final(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)

    @property
    def is_resumable(self) -> bool:
        return self in (JobStatus.INTERRUPTED, JobStatus.FAILED, JobStatus.CANCELLED)


# A job that no process will move on: streams end and `resume` becomes possible.
STOPPED = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.INTERRUPTED}
)


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
    max_seq_length: int = Field(512, ge=8, le=131072, description="longer examples are cut")
    gradient_accumulation_steps: int = Field(1, ge=1, le=1024)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    lr_scheduler_type: SCHEDULERS = "linear"
    eval_split: float = Field(0.0, ge=0, le=0.5, description="fraction held out for eval_loss")
    save_steps: int = Field(50, ge=1, description="checkpoint every this many optimizer steps")
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps")
    seed: int = Field(42, ge=0)
    num_processes: int = Field(1, ge=1, le=64, description=">1 runs distributed data-parallel")
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

    @model_validator(mode="after")
    def _served_name(self) -> TrainJobSpec:
        if self.served_model_name is not None and not self.load_on_completion:
            raise ValueError("served_model_name needs load_on_completion: true")
        return self
