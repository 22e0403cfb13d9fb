"""Evaluation: ``POST /evaluate`` (a background job), its results, and the history.

``POST /evaluate`` answers at once with an ``eval_id``; the evaluation runs in the server in
the background and ``GET /evaluate/results/{eval_id}`` shows its progress, then its scores
and per-sample rows. With ``wait: true`` (inline ``test_data`` of at most 16 samples) the
POST answers only once the evaluation has finished, with the results in the same response.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from gpt_service.api.deps import EvaluatorDep
from gpt_service.evaluation.spec import EvalRecord, EvalRequest
from gpt_service.store.records import JobStatus

router = APIRouter(prefix="/evaluate", tags=["evaluation"])

MAX_OFFSET = 2**31 - 1  # keep pagination in a sane range for every database


class EvalSampleRow(BaseModel):
    index: int
    input: str
    expected: str
    prediction: str
    scores: dict[str, float | None] = Field(
        description="per-sample exact_match, bleu, rouge1/rouge2/rougeL, chrf, perplexity"
    )
    completion_tokens: int
    finish_reason: str | None
    messages: list[dict[str, str]] | None = Field(
        None, description="the whole prompt conversation when it has more than one turn"
    )
    error: str | None = None


class EvalSummary(BaseModel):
    eval_id: str
    status: JobStatus
    model_name: str
    metrics: list[str]
    num_samples: int
    dataset_path: str | None
    progress: float = Field(description="percent of the work done (generation + perplexity)")
    scores: dict[str, float | None] | None = Field(
        None, description="exact_match and rouge in 0..1; bleu and chrf in 0..100"
    )
    error: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None


class EvalResults(EvalSummary):
    progress_detail: dict[str, Any] = Field(
        description="phase, samples_done, total_samples, perplexity_done"
    )
    params: dict[str, Any] = Field(description="the request as run (without inline samples)")
    details: dict[str, Any] | None = Field(
        None, description="per metric: BLEU/chrF signature, ROUGE-1/2/L means, perplexity NLL"
    )
    generation: dict[str, Any] | None = Field(
        None, description="tokens, seconds and tokens_per_second of the batched generation"
    )
    samples: list[EvalSampleRow] = Field(default_factory=list)
    samples_offset: int = 0


class EvaluateResponse(BaseModel):
    status: Literal["success"] = "success"
    eval_id: str
    message: str
    results: EvalResults | None = Field(None, description="only with wait: true")


class EvalHistoryResponse(BaseModel):
    evaluations: list[EvalSummary]
    total: int
    limit: int
    offset: int


def _summary_fields(record: EvalRecord) -> dict[str, Any]:
    result = record.result or {}
    return {
        "eval_id": record.id,
        "status": record.status,
        "model_name": record.params.model_name,
        "metrics": record.params.metrics,
        "num_samples": record.params.num_samples,
        "dataset_path": record.params.dataset_path,
        "progress": record.progress.progress,
        "scores": result.get("scores"),
        "error": record.error,
        "created_at": record.created_at,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
    }


def _results(record: EvalRecord, offset: int = 0, limit: int | None = None) -> EvalResults:
    result = record.result or {}
    rows = result.get("samples", [])
    end = None if limit is None else offset + limit
    return EvalResults(
        **_summary_fields(record),
        progress_detail=record.progress.model_dump(exclude_none=True),
        params=record.params.model_dump(mode="json"),
        details=result.get("details"),
        generation=result.get("generation"),
        samples=rows[offset:end],
        samples_offset=offset,
    )


@router.post(
    "",
    response_model=EvaluateResponse,
    summary="Evaluate a model (or 'model:adapter') on inline test_data or a dataset file",
)
async def evaluate(body: EvalRequest, evaluator: EvaluatorDep) -> EvaluateResponse:
    record = await evaluator.submit(body)
    if not body.wait:
        return EvaluateResponse(
            eval_id=record.id,
            message=f"evaluation of {record.params.num_samples} samples started; "
            f"see GET /evaluate/results/{record.id}",
        )
    record = await evaluator.wait(record.id)
    return EvaluateResponse(
        eval_id=record.id, message=f"evaluation {record.status}", results=_results(record)
    )


@router.get(
    "/results/{eval_id}",
    response_model=EvalResults,
    summary="Status, progress, scores and per-sample rows of an evaluation",
)
async def get_results(
    eval_id: str,
    evaluator: EvaluatorDep,
    sample_offset: int = Query(0, ge=0, le=MAX_OFFSET, description="first per-sample row returned"),
    sample_limit: int = Query(1000, ge=0, le=10000, description="per-sample rows returned"),
) -> EvalResults:
    return _results(await evaluator.get(eval_id), sample_offset, sample_limit)


@router.get(
    "/history", response_model=EvalHistoryResponse, summary="Past evaluations, newest first"
)
async def history(
    evaluator: EvaluatorDep,
    status: JobStatus | None = Query(None, description="only evaluations in this state"),
    limit: int = Query(20, ge=1, le=200),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> EvalHistoryResponse:
    records, total = await evaluator.list(status=status, limit=limit, offset=offset)
    return EvalHistoryResponse(
        evaluations=[EvalSummary(**_summary_fields(r)) for r in records],
        total=total,
        limit=limit,
        offset=offset,
    )
