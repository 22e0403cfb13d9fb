"""``JobManager``: training jobs as store rows, run by worker subprocesses, a few at a time.

The queue is the store itself (rows with status ``queued``, oldest first), shared by every
replica on the same database: each replica claims at most ``max_concurrent_jobs`` of them
(``JobStore.claim``: each job goes to one replica), launches their workers and reaps them,
and holds their leases through the replica's ``LeaseKeeper`` while the workers show progress
(a heartbeat; a hung worker is stopped and its job fails, see ``_stop_stalled``). Status, history, cancel and
resume work from any replica; the server never runs training code in its own process.

Store calls block (SQLite file locks, PostgreSQL round trips): the async methods run them in
threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpt_service.config import Settings
from gpt_service.errors import Conflict
from gpt_service.store.jobs import JobStore, StoreUnavailable
from gpt_service.store.leases import LeaseKeeper
from gpt_service.store.outage import OutageLog
from gpt_service.store.records import ACTIVE, JobStatus, now_iso
from gpt_service.training import launcher
from gpt_service.training.config import TRAIN, TrainJob, TrainJobSpec
from gpt_service.training.validation import prepare_job

if TYPE_CHECKING:
    from gpt_service.engine.registry import ModelRegistry

logger = logging.getLogger(__name__)


class JobManager:
    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        registry: ModelRegistry,
        leases: LeaseKeeper,
        poll_interval: float = 0.5,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.leases = leases
        self.poll_interval = poll_interval
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._cancelling: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._outage = OutageLog(logger, "training scheduler")
        # job id -> (the worker's last heartbeat seen, monotonic time it was first seen)
        self._beats: dict[str, tuple[float | None, float]] = {}
        self._stalls_checked = 0.0

    # ---- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="training-jobs")

    async def stop(self) -> None:
        """Shutdown: running jobs become ``interrupted`` (resumable), queued ones stay queued."""
        if self._task:
            self._task.cancel()
        for job_id, process in list(self.processes.items()):
            grace = self.settings.shutdown_grace_seconds
            returncode = await asyncio.to_thread(launcher.stop, process, grace)
            await asyncio.to_thread(self._stopped, job_id, returncode)
            del self.processes[job_id]
            self.leases.release(job_id)

    def _stopped(self, job_id: str, returncode: int) -> None:
        job = self.store.get(job_id, TRAIN)
        if returncode == 0 and job.result is not None:  # it finished just in time
            launcher.finalize(self.settings, self.store, job_id, returncode)
        else:
            self.store.update(job_id, only_if=[JobStatus.RUNNING], status=JobStatus.INTERRUPTED)

    @property
    def is_alive(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def num_running(self) -> int:
        return len(self.processes)

    # ---- requests --------------------------------------------------------------------
    async def submit(self, spec: TrainJobSpec) -> TrainJob:
        params = await asyncio.to_thread(prepare_job, spec, self.settings, self.registry)
        # One active job per output directory: the store refuses a second one (409), however
        # many replicas submit at once.
        job = await asyncio.to_thread(self.store.create, TRAIN, params)
        logger.info("training job %s queued (%s)", job.id, params.output_dir)
        self._wake.set()
        return job

    async def get(self, job_id: str) -> TrainJob:
        return await asyncio.to_thread(self.store.get, job_id, TRAIN)

    async def list(
        self, status: str | None = None, limit: int = 20, offset: int = 0
    ) -> tuple[list[TrainJob], int]:
        return await asyncio.to_thread(self.store.list, TRAIN, status, limit, offset)

    async def cancel(self, job_id: str) -> TrainJob:
        """Here: stop the worker. Elsewhere: mark it cancelled with the cancel flag set; its
        owner stops the worker at its next lease renewal, the worker at its next step."""
        job = await self.get(job_id)
        if not job.status.is_active:
            raise Conflict(f"job '{job_id}' is {job.status}; only queued or running jobs cancel")
        process = self.processes.get(job_id)
        if process is not None:
            self._cancelling.add(job_id)
            try:
                await asyncio.to_thread(launcher.stop, process, 5.0)
            finally:
                self._cancelling.discard(job_id)
                self.processes.pop(job_id, None)
                self.leases.release(job_id)
        cancelled = await asyncio.to_thread(
            self.store.update,
            job_id,
            only_if=ACTIVE,  # the worker may have finished meanwhile
            status=JobStatus.CANCELLED,
            cancel_requested=True,
            finished_at=now_iso(),
        )
        if cancelled:
            logger.info("training job %s cancelled", job_id)
        self._wake.set()
        return await self.get(job_id)

    async def resume(self, job_id: str) -> TrainJob:
        """Queue a stopped job again; a worker on any replica continues from its last
        checkpoint."""
        job = await self.get(job_id)
        if not job.status.is_resumable:
            raise Conflict(
                f"job '{job_id}' is {job.status}; only interrupted, failed or cancelled jobs resume"
            )
        changes: dict[str, Any] = {
            "status": JobStatus.QUEUED,
            "params": job.params.model_copy(update={"resume": True}),
            "error": None,
            "finished_at": None,
            "owner": None,
            "lease_expires_at": None,
            "cancel_requested": False,
        }
        resumed = await asyncio.to_thread(
            self.store.update, job_id, only_if=[job.status], **changes
        )
        if not resumed:
            raise Conflict(f"job '{job_id}' changed meanwhile; look at its status again")
        self._wake.set()
        # The state this request set (as ``submit`` answers): reading the row again would race
        # the scheduler, which may already have started it.
        return job.model_copy(update=changes)

    # ---- scheduling ------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            try:
                await self._reap()
                await asyncio.to_thread(self._launch_queued)
                await asyncio.to_thread(self._stop_stalled)
                self._outage.ok()
            except StoreUnavailable as exc:  # waits for the database; /health shows it
                self._outage.failed(exc.message)
            except Exception:  # the scheduler must outlive any one job's trouble
                logger.exception("training scheduler step failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    def _launch_queued(self) -> None:
        free = self.settings.training.max_concurrent_jobs - len(self.processes)
        lease = self.leases.lease_seconds
        for job in self.store.claim(TRAIN, self.leases.owner, free, lease):
            try:
                self.processes[job.id] = launcher.launch(self.settings, self.store, job)
            except Exception as exc:
                self.store.update(job.id, status=JobStatus.FAILED, error=f"could not start: {exc}")
                continue
            self.leases.hold(job.id, self._lost)
            self._beats[job.id] = (None, time.monotonic())

    def _stop_stalled(self) -> None:
        """A worker alive but without a heartbeat for ``stall_seconds`` (hung: a deadlock, a
        stopped process, a dead rank's peers waiting): the job fails with the reason and the
        worker is stopped. Its lease would otherwise be renewed as long as this replica lives.
        The heartbeat is compared with itself, on this replica's clock: no clock skew."""
        limit = self.settings.training.stall_seconds
        now = time.monotonic()
        if not limit or now - self._stalls_checked < min(self.leases.interval, limit / 3):
            return
        self._stalls_checked = now
        for job_id, process in list(self.processes.items()):
            beat = self.store.get(job_id, TRAIN).heartbeat_at
            last, since = self._beats.setdefault(job_id, (None, now))
            if beat != last or process.poll() is not None:
                self._beats[job_id] = (beat, now)
                continue
            if now - since < limit:
                continue
            error = (
                f"the worker made no progress for {now - since:.0f} s (stall_seconds "
                f"{limit:g}): hung, so it was stopped; resume continues from its last checkpoint"
            )
            logger.warning("training job %s: %s", job_id, error)
            done = {"finished_at": now_iso(), "owner": None, "lease_expires_at": None}
            self.store.update(
                job_id, only_if=[JobStatus.RUNNING], status=JobStatus.FAILED, error=error, **done
            )
            launcher.stop(process, 5.0)  # reaped next round; the row keeps ``failed``

    def _lost(self, job_id: str) -> None:
        """Called by the lease keeper (in a thread): cancelled elsewhere, or lease lost."""
        process = self.processes.get(job_id)
        if process is not None:
            launcher.stop(process, 5.0)

    async def _reap(self) -> None:
        for job_id, process in list(self.processes.items()):
            if job_id in self._cancelling or process.poll() is None:
                continue
            del self.processes[job_id]
            self._beats.pop(job_id, None)
            job = await self.get(job_id)
            trained = process.returncode == 0 and job.result is not None
            is_running = job.status == JobStatus.RUNNING
            if trained and is_running and job.params.spec.load_on_completion:
                await self._serve_result(job)  # before ``completed``: then it is servable
            await asyncio.to_thread(
                launcher.finalize, self.settings, self.store, job_id, process.returncode
            )
            self.leases.release(job_id)

    async def _serve_result(self, job: TrainJob) -> None:
        """Load the finished adapter: onto the base if it is loaded, else as a new model."""
        spec = job.params.spec
        output = job.params.output_path
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
                await self.registry.load(name, job.params.base_model_path, output)
                served["served_as"] = name
        except Exception as exc:  # the job still completed; say why it is not served
            logger.warning("could not load the adapter of job %s: %s", job.id, exc)
            served["load_error"] = str(exc)
        await asyncio.to_thread(self.store.update, job.id, result={**(job.result or {}), **served})
