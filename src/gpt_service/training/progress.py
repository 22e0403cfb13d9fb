"""A ``TrainerCallback`` that writes a job's progress (and loss history) to the job store,
and stops the run when the job was cancelled (from any replica) or taken from its owner."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from transformers import TrainerCallback

from gpt_service.store.jobs import JobStore
from gpt_service.store.records import JobStatus
from gpt_service.training.config import TRAIN, LossPoint, TrainProgress

logger = logging.getLogger(__name__)

MAX_HISTORY = 500  # points kept per curve; older points are thinned, not dropped
CANCEL_CHECK_SECONDS = 1.0
BEAT_SECONDS = 5.0  # the heartbeat the replica watches for a hung worker (stall_seconds)


class JobCancelled(Exception):
    """The job's row is no longer ``running``: cancelled, or interrupted by a lease sweep."""


def thin(points: list[LossPoint], limit: int = MAX_HISTORY) -> list[LossPoint]:
    """Keep a long curve's shape in ``limit`` points: every other old point, all recent ones."""
    while len(points) > limit:
        half = len(points) // 2
        points = points[:half:2] + points[half:]
    return points


class StoreProgressCallback(TrainerCallback):
    """Rank 0 records step, epoch, loss, learning rate, eval loss and ETA after each log."""

    def __init__(self, store: JobStore, job_id: str, history: TrainProgress) -> None:
        self.store = store
        self.job_id = job_id
        self.loss_history: list[LossPoint] = list(history.loss_history)
        self.eval_history: list[LossPoint] = list(history.eval_history)
        self.latest: dict[str, Any] = {}
        self._started = time.monotonic()
        self._first_step = 0
        self._checked = time.monotonic()
        self._beaten = 0.0

    def beat(self, state: Any) -> None:
        """Rank 0 tells its replica it is making progress (at most every ``BEAT_SECONDS``)."""
        if not state.is_world_process_zero or time.monotonic() - self._beaten < BEAT_SECONDS:
            return
        self._beaten = time.monotonic()
        try:
            self.store.beat(self.job_id)
        except Exception:  # the database is away: keep training
            logger.warning("could not record the heartbeat of job %s", self.job_id, exc_info=True)

    def on_substep_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.beat(state)  # gradient accumulation: several forwards per step

    def on_prediction_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.beat(state)  # the evaluation loop

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._started = time.monotonic()
        self._first_step = state.global_step  # > 0 when resumed from a checkpoint
        # A resumed run replays from its checkpoint: forget points logged after it.
        self.loss_history = [p for p in self.loss_history if p.step <= state.global_step]
        self.eval_history = [p for p in self.eval_history if p.step <= state.global_step]
        if state.is_world_process_zero:
            self._write(state, args)

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any
    ) -> None:
        logs = logs or {}
        point = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        if "loss" in logs:
            self.latest["loss"] = float(logs["loss"])
            self.latest["learning_rate"] = float(logs.get("learning_rate", 0.0))
            self.loss_history.append(LossPoint(**point, loss=self.latest["loss"]))
            self.loss_history = thin(self.loss_history)
        if "eval_loss" in logs:
            self.latest["eval_loss"] = float(logs["eval_loss"])
            self.eval_history.append(LossPoint(**point, eval_loss=self.latest["eval_loss"]))
            self.eval_history = thin(self.eval_history)
        if state.is_world_process_zero:
            self._write(state, args)

    def _eta(self, state: Any) -> float | None:
        done = state.global_step - self._first_step
        if done <= 0 or not state.max_steps:
            return None
        per_step = (time.monotonic() - self._started) / done
        return round(per_step * max(state.max_steps - state.global_step, 0), 1)

    def _write(self, state: Any, args: Any) -> None:
        total = state.max_steps or 0
        epoch = float(state.epoch or 0.0)
        progress = TrainProgress(
            progress=round(100.0 * state.global_step / total, 1) if total else 0.0,
            current_step=state.global_step,
            total_steps=total,
            current_epoch=math.floor(epoch + 1e-9),
            epoch=round(epoch, 4),
            total_epochs=args.num_train_epochs,
            eta_seconds=self._eta(state),
            loss_history=self.loss_history,
            eval_history=self.eval_history,
            **self.latest,
        )
        try:
            self.store.update(self.job_id, progress=progress)
        except Exception:  # a busy database must not kill a long training run
            logger.warning("could not record progress of job %s", self.job_id, exc_info=True)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Rank 0 looks at the row about once a second: a cancel from any replica lands here
        even when the replica that launched this worker is on another machine."""
        self.beat(state)
        if (
            not state.is_world_process_zero
            or time.monotonic() - self._checked < CANCEL_CHECK_SECONDS
        ):
            return
        self._checked = time.monotonic()
        try:
            job = self.store.get(self.job_id, TRAIN)
        except Exception:  # the database is away: keep training, the lease decides
            logger.warning("could not read job %s", self.job_id, exc_info=True)
            return
        if job.cancel_requested or job.status != JobStatus.RUNNING:
            raise JobCancelled(f"job {self.job_id} is {job.status}; stopping")
