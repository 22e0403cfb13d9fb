"""A ``TrainerCallback`` that writes a job's progress (and loss history) to the job store."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from transformers import TrainerCallback

from gpt_service.store.sqlite import JobStore

logger = logging.getLogger(__name__)

MAX_HISTORY = 500  # points kept per curve; older points are thinned, not dropped


def thin(points: list[dict[str, Any]], limit: int = MAX_HISTORY) -> list[dict[str, Any]]:
    """Keep a long curve's shape in ``limit`` points: every other old point, all recent ones."""
    while len(points) > limit:
        half = len(points) // 2
        points = points[:half:2] + points[half:]
    return points


class StoreProgressCallback(TrainerCallback):
    """Rank 0 records step, epoch, loss, learning rate, eval loss and ETA after each log."""

    def __init__(self, store: JobStore, job_id: str, history: dict[str, list[dict]]) -> None:
        self.store = store
        self.job_id = job_id
        self.loss_history: list[dict[str, Any]] = history.get("loss_history", [])
        self.eval_history: list[dict[str, Any]] = history.get("eval_history", [])
        self.latest: dict[str, Any] = {}
        self._started = time.monotonic()
        self._first_step = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._started = time.monotonic()
        self._first_step = state.global_step  # > 0 when resumed from a checkpoint
        # A resumed run replays from its checkpoint: forget points logged after it.
        self.loss_history = [p for p in self.loss_history if p["step"] <= state.global_step]
        self.eval_history = [p for p in self.eval_history if p["step"] <= state.global_step]
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
            self.loss_history.append({**point, "loss": self.latest["loss"]})
            self.loss_history = thin(self.loss_history)
        if "eval_loss" in logs:
            self.latest["eval_loss"] = float(logs["eval_loss"])
            self.eval_history.append({**point, "eval_loss": self.latest["eval_loss"]})
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
        progress = {
            "progress": round(100.0 * state.global_step / total, 1) if total else 0.0,
            "current_step": state.global_step,
            "total_steps": total,
            "current_epoch": math.floor(epoch + 1e-9),
            "epoch": round(epoch, 4),
            "total_epochs": args.num_train_epochs,
            "eta_seconds": self._eta(state),
            "loss_history": self.loss_history,
            "eval_history": self.eval_history,
            **self.latest,
        }
        try:
            self.store.update(self.job_id, progress=progress)
        except Exception:  # a busy database must not kill a long training run
            logger.warning("could not record progress of job %s", self.job_id, exc_info=True)
