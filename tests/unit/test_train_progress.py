"""The worker's progress callback: typed progress rows, and a cancel seen from the worker."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from gpt_service.store.jobs import JobStore
from gpt_service.store.records import JobStatus
from gpt_service.training import progress as progress_module
from gpt_service.training.config import TRAIN, TrainJobSpec, TrainParams
from gpt_service.training.progress import JobCancelled, StoreProgressCallback


def running_job(tmp_path: Path) -> tuple[JobStore, str]:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    spec = TrainJobSpec(base_model="tiny", dataset_path="d.jsonl")
    params = TrainParams(
        spec=spec, base_model_path="/m", dataset_file="/d", output_dir="o", output_path="/o"
    )
    job = store.create(TRAIN, params)
    store.claim(TRAIN, "replica-a", 1, 30)
    return store, job.id


def state(step: int) -> SimpleNamespace:
    return SimpleNamespace(
        global_step=step, epoch=step / 4, max_steps=8, is_world_process_zero=True
    )


def test_progress_is_written_as_typed_rows(tmp_path: Path) -> None:
    store, job_id = running_job(tmp_path)
    callback = StoreProgressCallback(store, job_id, store.get(job_id, TRAIN).progress)
    args = SimpleNamespace(num_train_epochs=2)
    callback.on_train_begin(args, state(0), None)
    callback.on_log(args, state(1), None, logs={"loss": 2.5, "learning_rate": 0.01})
    callback.on_log(args, state(2), None, logs={"loss": 2.0, "learning_rate": 0.01})
    progress = store.get(job_id, TRAIN).progress
    assert (progress.current_step, progress.total_steps, progress.loss) == (2, 8, 2.0)
    assert [p.step for p in progress.loss_history] == [1, 2] and progress.progress == 25.0


def test_a_cancel_made_on_another_replica_stops_the_worker_at_its_next_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress_module, "CANCEL_CHECK_SECONDS", 0.0)
    store, job_id = running_job(tmp_path)
    callback = StoreProgressCallback(store, job_id, store.get(job_id, TRAIN).progress)
    monkeypatch.setattr(progress_module, "BEAT_SECONDS", 0.0)
    assert store.get(job_id, TRAIN).heartbeat_at is None
    callback.on_step_end(None, state(1), None)  # still running: only a heartbeat
    assert store.get(job_id, TRAIN).heartbeat_at is not None  # what the replica watches
    store.update(job_id, status=JobStatus.CANCELLED, cancel_requested=True)
    with pytest.raises(JobCancelled, match="cancelled"):
        callback.on_step_end(None, state(2), None)
    other_rank = SimpleNamespace(**{**vars(state(3)), "is_world_process_zero": False})
    callback.on_step_end(None, other_rank, None)  # only rank 0 reads the row
