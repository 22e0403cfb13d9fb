"""What an evaluation is: the request fields (validated before anything runs) and the statuses.

Torch-free on purpose: the HTTP layer uses ``EvalRequest`` as its request body.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from gpt_service.engine.types import SamplingParams
from gpt_service.evaluation.metrics import SUPPORTED_METRICS
from gpt_service.schema_base import StrictBody
from gpt_service.store.records import JobKind, JobRecord, JobStatus

DEFAULT_METRICS: tuple[str, ...] = ("perplexity", "exact_match", "bleu", "rouge", "chrf")
# ``wait: true`` answers with the results in the POST response; only for small inline sets,
# so a request never holds a connection open for a long evaluation.
MAX_WAIT_SAMPLES = 16
# sacrebleu tokenizers that need no extra package or download (spm/flores fetch a model).
BleuTokenize = Literal["13a", "zh", "intl", "char", "none"]


class EvalSample(BaseModel):
    """One inline test case, as in API.md: the prompt and the reference answer."""

    model_config = {"extra": "forbid"}

    input: str = Field(..., min_length=1, examples=["什么是AI？"])
    expected: str = Field(..., min_length=1, examples=["AI是人工智能的缩写..."])


class EvalOptions(BaseModel):
    """How an evaluation runs: shared by the request and the stored row."""

    model_config = {"extra": "forbid"}

    dataset_path: str | None = Field(
        None,
        description="json/jsonl/csv file (training formats: input/expected, instruction/output, "
        "prompt/completion, messages), relative to the data directory or the bundled demo data",
        examples=["demo_test.jsonl"],
    )
    dataset_format: Literal["auto", "json", "jsonl", "csv"] = "auto"
    metrics: list[str] = Field(
        default_factory=lambda: list(DEFAULT_METRICS),
        description=f"any of {', '.join(SUPPORTED_METRICS)}",
    )
    max_samples: int | None = Field(None, ge=1, description="evaluate only the first N samples")
    max_tokens: int = Field(128, ge=1, description="maximum new tokens per prediction")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 (default) is greedy")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0)
    repetition_penalty: float = Field(1.0, gt=0.0, le=10.0)
    stop: list[str] | None = Field(None, description="stop strings")
    seed: int | None = Field(None, ge=0, description="seed for sampled (temperature > 0) runs")
    use_chat_template: bool = Field(
        True, description="wrap each input in the model's chat template (else the raw text)"
    )
    ignore_case: bool = Field(False, description="exact_match: compare lower-cased")
    ignore_punctuation: bool = Field(False, description="exact_match: drop punctuation first")
    bleu_tokenize: BleuTokenize | None = Field(
        None, description="sacrebleu tokenizer (default: 'zh' if references hold CJK, else '13a')"
    )

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError(f"metrics must name at least one of {', '.join(SUPPORTED_METRICS)}")
        unknown = [name for name in value if name not in SUPPORTED_METRICS]
        if unknown:
            raise ValueError(
                f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(SUPPORTED_METRICS)}"
            )
        return list(dict.fromkeys(value))


class EvalRequest(EvalOptions, StrictBody):
    """``POST /evaluate`` body: API.md's fields plus dataset files and generation options."""

    model_name: str | None = Field(
        None,
        description="loaded model (default: current); 'name:adapter' evaluates a LoRA adapter",
        examples=["demo"],
    )
    test_data: list[EvalSample] | None = Field(
        None, description="inline test cases (give this or dataset_path)"
    )
    wait: bool = Field(
        False,
        description=f"inline test_data of at most {MAX_WAIT_SAMPLES} samples only: answer with "
        "the finished results instead of just the eval_id",
    )

    @model_validator(mode="after")
    def _one_source(self) -> EvalRequest:
        if (self.test_data is None) == (self.dataset_path is None):
            raise ValueError("give either test_data (inline samples) or dataset_path, not both")
        if self.test_data is not None and not self.test_data:
            raise ValueError("test_data must not be empty")
        if self.wait and (self.test_data is None or len(self.test_data) > MAX_WAIT_SAMPLES):
            raise ValueError(
                f"wait is only for inline test_data of at most {MAX_WAIT_SAMPLES} samples; "
                "poll GET /evaluate/results/{eval_id} for larger evaluations"
            )
        return self

    def sampling(self) -> SamplingParams:
        return SamplingParams(
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            repetition_penalty=self.repetition_penalty,
            stop=tuple(self.stop or ()),
            seed=self.seed,
        )

    @property
    def text_metrics(self) -> list[str]:
        return [name for name in self.metrics if name != "perplexity"]

    def metric_options(self) -> dict[str, dict[str, Any]]:
        options: dict[str, dict[str, Any]] = {
            "exact_match": {
                "ignore_case": self.ignore_case,
                "ignore_punctuation": self.ignore_punctuation,
            }
        }
        if self.bleu_tokenize is not None:
            options["bleu"] = {"tokenize": self.bleu_tokenize}
        return options

    def stored_params(self, model_name: str, num_samples: int) -> EvalParams:
        """What the job row keeps: everything but the inline samples (they go in the result)."""
        options = self.model_dump(exclude={"test_data", "wait", "model_name"})
        return EvalParams(**options, model_name=model_name, num_samples=num_samples)


class EvalParams(EvalOptions):
    """An evaluation's row parameters: the request as run, on the served model name."""

    model_config = {"extra": "ignore"}

    model_name: str = ""
    num_samples: int = 0


class EvalProgress(BaseModel):
    model_config = {"extra": "ignore"}

    phase: str | None = None
    samples_done: int = 0
    total_samples: int = 0
    perplexity_done: int = 0
    progress: float = 0.0


NOT_RESUMABLE = "an evaluation does not resume: submit it again"
EVAL: JobKind[EvalParams, EvalProgress] = JobKind(
    "eval",
    EvalParams,
    EvalProgress,
    owned_when_queued=True,
    lost_status=JobStatus.FAILED,
    lost_reason="the replica running it went away before it finished (server or machine "
    f"gone, its lease expired); {NOT_RESUMABLE}",
)
EvalRecord = JobRecord[EvalParams, EvalProgress]
