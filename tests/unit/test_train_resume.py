"""``POST /train/{id}/resume`` answers with the state it set: a scheduler (here or on another
replica) that claims the job before the answer is built must not change what the caller reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpt_service.store.records import JobStatus
from gpt_service.training.config import TRAIN
from tests.unit.conftest import training_jobs


async def test_resume_answers_queued_even_when_claimed_at_once(tmp_path: Path) -> None:
    _, store, _, manager, job = training_jobs(tmp_path / "data")
    store.update(job.id, status=JobStatus.INTERRUPTED, error="the replica went away")

    update = store.update

    def update_then_claim(job_id: str, **fields: Any) -> bool:
        changed = update(job_id, **fields)
        if changed and fields.get("status") is JobStatus.QUEUED:
            assert store.claim(TRAIN, "other-replica", 1, 30)  # a scheduler is quicker
        return changed

    store.update = update_then_claim  # type: ignore[method-assign]
    answer = await manager.resume(job.id)
    assert answer.status is JobStatus.QUEUED
    assert answer.params.resume and answer.error is None and answer.owner is None
    stored = store.get(job.id, TRAIN)
    assert stored.status is JobStatus.RUNNING and stored.owner == "other-replica"
    assert stored.params.resume
