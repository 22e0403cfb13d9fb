"""LoRA fine-tuning jobs: submit, status (JSON or a live SSE stream), history, cancel, resume."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse

from gpt_service.api.deps import FeedDep, JobsDep
from gpt_service.training.config import JobStatus, TrainJob, TrainJobSpec

router = APIRouter(prefix="/train", tags=["training"])


class TrainSubmitResponse(BaseModel):
    status: str = "success"
    task_id: str
    message: str


class TrainStatusResponse(BaseModel):
    """API.md's fields first, then the extras."""

    task_id: str
    status: JobStatus
    progress: float = Field(0.0, description="percent of optimizer steps done")
    current_epoch: int = 0
    total_epochs: float
    loss: float | None = None
    created_at: str
    started_at: str | None = None
    output_dir: str
    current_step: int = 0
    total_steps: int | None = None
    epoch: float = Field(0.0, description="fractional epoch")
    learning_rate: float | None = None
    eval_loss: float | None = None
    eta_seconds: float | None = None
    finished_at: str | None = None
    error: str | None = None
    stage: str | None = Field(None, description="what the worker is doing now")
    base_model: str
    dataset_path: str
    num_examples: int | None = None
    result: dict[str, Any] | None = Field(None, description="final metrics; served_as if loaded")
    replica: str | None = Field(None, description="who runs it: replica name:pid:instance")
    num_nodes: int = 1
    loss_history: list[dict[str, Any]] | None = None
    eval_history: list[dict[str, Any]] | None = None


class TrainHistoryResponse(BaseModel):
    tasks: list[TrainStatusResponse]
    total_count: int
    limit: int
    offset: int


def status_view(job: TrainJob, with_history: bool = True) -> TrainStatusResponse:
    spec, progress = job.params.spec, job.progress
    done = 100.0 if job.status == JobStatus.COMPLETED else 0.0

    def history(points: list[Any]) -> list[dict[str, Any]] | None:
        return [p.model_dump(exclude_none=True) for p in points] if with_history else None

    return TrainStatusResponse(
        task_id=job.id,
        status=job.status,
        progress=progress.progress if progress.progress is not None else done,
        current_epoch=progress.current_epoch,
        total_epochs=progress.total_epochs or spec.num_epochs,
        loss=progress.loss,
        created_at=job.created_at,
        started_at=job.started_at,
        output_dir=job.params.output_dir,
        current_step=progress.current_step,
        total_steps=progress.total_steps,
        epoch=progress.epoch,
        learning_rate=progress.learning_rate,
        eval_loss=progress.eval_loss,
        eta_seconds=progress.eta_seconds,
        finished_at=job.finished_at,
        error=job.error,
        stage=progress.stage,
        base_model=spec.base_model,
        dataset_path=spec.dataset_path,
        num_examples=job.params.num_examples,
        result=job.result,
        replica=job.owner if job.status == JobStatus.RUNNING else None,
        num_nodes=spec.num_nodes,
        loss_history=history(progress.loss_history),
        eval_history=history(progress.eval_history),
    )


@router.post("", response_model=TrainSubmitResponse, summary="Start a LoRA fine-tuning job")
async def submit(spec: TrainJobSpec, jobs: JobsDep) -> TrainSubmitResponse:
    job = await jobs.submit(spec)
    return TrainSubmitResponse(task_id=job.id, message="训练任务已创建 (training job queued)")


@router.get("/status/{task_id}", response_model=TrainStatusResponse, summary="A job's state")
async def status(task_id: str, jobs: JobsDep) -> TrainStatusResponse:
    return status_view(await jobs.get(task_id))


@router.get(
    "/status/{task_id}/stream",
    summary="Live progress (SSE): a `progress` event per change, then `end`",
    response_class=EventSourceResponse,
)
async def stream(
    task_id: str, jobs: JobsDep, feed: FeedDep, interval: float = Query(0.5, ge=0.1, le=10)
) -> EventSourceResponse:
    """Pushed from the store: on PostgreSQL each change of the row wakes the stream (on any
    replica, wherever the job runs); on SQLite the row is read every ``interval`` seconds."""
    await jobs.get(task_id)  # 404 before the stream starts

    async def events() -> AsyncIterator[dict[str, str]]:
        last = None
        while True:
            view = status_view(await jobs.get(task_id), with_history=False)
            data = view.model_dump(mode="json", exclude={"loss_history", "eval_history"})
            if data != last:
                yield {"event": "progress", "data": json.dumps(data, ensure_ascii=False)}
                last = data
            if view.status.is_stopped:
                yield {"event": "end", "data": json.dumps({"status": view.status.value})}
                return
            await feed.wait(task_id, interval if not feed.is_listening else 10 * interval)

    return EventSourceResponse(events(), ping=15)


@router.get("/history", response_model=TrainHistoryResponse, summary="Jobs, newest first")
async def history(
    jobs: JobsDep,
    status: JobStatus | None = Query(None, description="only jobs with this status"),
    limit: int = Query(20, ge=1, le=200),
    offset: int = Query(0, ge=0, le=2**31, description="jobs to skip"),
) -> TrainHistoryResponse:
    records, total = await jobs.list(status.value if status else None, limit, offset)
    return TrainHistoryResponse(
        tasks=[status_view(r, with_history=False) for r in records],
        total_count=total,
        limit=limit,
        offset=offset,
    )


@router.post("/{task_id}/cancel", response_model=TrainStatusResponse, summary="Cancel a job")
async def cancel(task_id: str, jobs: JobsDep) -> TrainStatusResponse:
    return status_view(await jobs.cancel(task_id), with_history=False)


@router.post(
    "/{task_id}/resume",
    response_model=TrainStatusResponse,
    summary="Queue an interrupted, failed or cancelled job again (from its last checkpoint)",
)
async def resume(task_id: str, jobs: JobsDep) -> TrainStatusResponse:
    return status_view(await jobs.resume(task_id), with_history=False)
