"""``JobManager``: training jobs as store rows, run by worker subprocesses, a few at a time.

The queue is the store itself (rows with status ``queued``, oldest first), so queued jobs
survive a restart. One asyncio task launches workers up to ``max_concurrent_jobs`` and
reaps them; the server never runs training code in its own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpt_service.config import Settings
from gpt_service.errors import Conflict
from gpt_service.store.sqlite import JobRecord, JobStore, now_iso
from gpt_service.training import launcher
from gpt_service.training.config import JobStatus, TrainJobSpec
from gpt_service.training.validation import prepare_job

if TYPE_CHECKING:
    from gpt_service.engine.registry import ModelRegistry

logger = logging.getLogger(__name__)

KIND = "train"
ACTIVE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


class JobManager:
    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        registry: ModelRegistry,
        poll_interval: float = 0.5,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.poll_interval = poll_interval
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._cancelling: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # ---- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        interrupted = self._mark_interrupted()
        if interrupted:
            logger.warning("training jobs interrupted by the last shutdown: %s", interrupted)
        self._task = asyncio.create_task(self._run(), name="training-jobs")

    async def stop(self) -> None:
        """Shutdown: running jobs become ``interrupted`` (resumable), queued ones stay queued."""
        if self._task:
            self._task.cancel()
        for job_id, process in list(self.processes.items()):
            grace = self.settings.shutdown_grace_seconds
            returncode = await asyncio.to_thread(launcher.stop, process, grace)
            job = self.get(job_id)
            if returncode == 0 and job.result is not None:  # it finished just in time
                launcher.finalize(self.settings, self.store, job_id, returncode)
            elif job.status == JobStatus.RUNNING.value:
                self.store.update(job_id, status=JobStatus.INTERRUPTED.value)
            del self.processes[job_id]

    def _mark_interrupted(self) -> list[str]:
        """Jobs left ``running`` by a process that is gone can no longer be running.

        Not the store's blanket ``mark_interrupted``: a ``gpt-service train`` in another
        terminal may be running a job on the same data directory right now.
        """
        import psutil

        jobs, _ = self.store.list(KIND, status=JobStatus.RUNNING.value, limit=10_000)
        orphans = [j.id for j in jobs if not _owner_alive(j.params.get("owner_pid"), psutil)]
        for job_id in orphans:
            self.store.update(job_id, status=JobStatus.INTERRUPTED.value)
        return orphans

    @property
    def is_alive(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def num_running(self) -> int:
        return len(self.processes)

    # ---- requests --------------------------------------------------------------------
    async def submit(self, spec: TrainJobSpec) -> JobRecord:
        params = await asyncio.to_thread(prepare_job, spec, self.settings, self.registry)
        self._check_output_free(params["output_path"])
        job = self.store.create(KIND, params)
        logger.info("training job %s queued (%s)", job.id, params["output_dir"])
        self._wake.set()
        return job

    def get(self, job_id: str) -> JobRecord:
        return self.store.get(job_id, kind=KIND)

    def list(
        self, status: str | None = None, limit: int = 20, offset: int = 0
    ) -> tuple[list[JobRecord], int]:
        return self.store.list(KIND, status=status, limit=limit, offset=offset)

    async def cancel(self, job_id: str) -> JobRecord:
        job = self.get(job_id)
        if job.status not in ACTIVE:
            raise Conflict(f"job '{job_id}' is {job.status}; only queued or running jobs cancel")
        process = self.processes.get(job_id)
        if process is not None:
            self._cancelling.add(job_id)
            try:
                await asyncio.to_thread(launcher.stop, process, 5.0)
            finally:
                self._cancelling.discard(job_id)
                self.processes.pop(job_id, None)
        if self.get(job_id).status in ACTIVE:  # the worker may have finished meanwhile
            self.store.update(job_id, status=JobStatus.CANCELLED.value, finished_at=now_iso())
            logger.info("training job %s cancelled", job_id)
        self._wake.set()
        return self.get(job_id)

    async def resume(self, job_id: str) -> JobRecord:
        """Queue a stopped job again; the worker continues from its last checkpoint."""
        job = self.get(job_id)
        if not JobStatus(job.status).is_resumable:
            raise Conflict(
                f"job '{job_id}' is {job.status}; only interrupted, failed or cancelled jobs resume"
            )
        self._check_output_free(job.params["output_path"], except_id=job_id)
        params = {**job.params, "resume": True}
        self.store.update(
            job_id, status=JobStatus.QUEUED.value, params=params, error=None, finished_at=None
        )
        self._wake.set()
        return self.get(job_id)

    def _check_output_free(self, output_path: str, except_id: str | None = None) -> None:
        for status in ACTIVE:
            jobs, _ = self.store.list(KIND, status=status, limit=10_000)
            for other in jobs:
                same = Path(other.params.get("output_path", "")) == Path(output_path)
                if same and other.id != except_id:
                    raise Conflict(f"job '{other.id}' ({other.status}) already writes there")

    # ---- scheduling ------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            try:
                await self._reap()
                self._launch_queued()
            except Exception:  # the scheduler must outlive any one job's trouble
                logger.exception("training scheduler step failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    def _launch_queued(self) -> None:
        free = self.settings.training.max_concurrent_jobs - len(self.processes)
        if free <= 0:
            return
        queued, _ = self.store.list(KIND, status=JobStatus.QUEUED.value, limit=10_000)
        for job in reversed(queued[-free:]):  # the list is newest first: start the oldest
            self.processes[job.id] = launcher.launch(self.settings, self.store, job)

    async def _reap(self) -> None:
        for job_id, process in list(self.processes.items()):
            if job_id in self._cancelling or process.poll() is None:
                continue
            del self.processes[job_id]
            job = self.get(job_id)
            trained = process.returncode == 0 and job.result is not None
            is_running = job.status == JobStatus.RUNNING.value
            if trained and is_running and job.params["spec"].get("load_on_completion"):
                await self._serve_result(job)  # before ``completed``: then it is servable
            launcher.finalize(self.settings, self.store, job_id, process.returncode)

    async def _serve_result(self, job: JobRecord) -> None:
        """Load the finished adapter: onto the base if it is loaded, else as a new model."""
        spec = TrainJobSpec(**job.params["spec"])
        output = job.params["output_path"]
        served: dict[str, Any] = {}
        try:
            if spec.base_model in self.registry.models:
                adapter = Path(output).name
                try:
                    key = await self.registry.add_adapter(spec.base_model, output, adapter)
                except Conflict:
                    key = await self.registry.add_adapter(
                        spec.base_model, output, f"{adapter}-{job.id[:8]}"
                    )
                served["served_as"] = f"{spec.base_model}:{key}"
            else:
                name = spec.served_model_name or f"{Path(spec.base_model).name}-{job.id[:8]}"
                await self.registry.load(name, job.params["base_model_path"], output)
                served["served_as"] = name
        except Exception as exc:  # the job still completed; say why it is not served
            logger.warning("could not load the adapter of job %s: %s", job.id, exc)
            served["load_error"] = str(exc)
        self.store.update(job.id, result={**(job.result or {}), **served})


def _owner_alive(pid: object, psutil: Any) -> bool:
    return isinstance(pid, int) and pid != os.getpid() and psutil.pid_exists(pid)
