"""A hung training worker (alive, no progress) fails its job instead of holding its lease for
as long as the replica lives: a real worker process on a real SQLite store, hung by SIGSTOP."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from gpt_service.store.jobs import JobStore
from gpt_service.store.records import JobStatus
from gpt_service.training.config import TRAIN
from tests.unit.conftest import training_jobs

# Stands in for the training worker: beats like its progress callback does, until stopped.
BEATING_WORKER = """
import sys, time
from gpt_service.store.jobs import JobStore
store = JobStore(sys.argv[1], migrate=False)
while True:
    store.beat(sys.argv[2])
    time.sleep(0.1)
"""
STALL = 0.7
WAIT = 30.0


async def _status(store: JobStore, job_id: str, wanted: JobStatus) -> JobStatus:
    for _ in range(int(WAIT / 0.1)):
        status = (await asyncio.to_thread(store.get, job_id, TRAIN)).status
        if status is wanted:
            break
        await asyncio.sleep(0.1)
    return status


async def test_a_worker_that_stops_beating_fails_its_job_and_is_stopped(tmp_path: Path) -> None:
    settings, store, leases, manager, job = training_jobs(tmp_path / "data", stall_seconds=STALL)
    store.claim(TRAIN, leases.owner, 1, 30)
    worker = subprocess.Popen(
        [sys.executable, "-c", BEATING_WORKER, settings.store_url, job.id],
        start_new_session=True,
    )
    manager.processes[job.id] = worker
    leases.hold(job.id, manager._lost)
    await manager.start()
    try:
        await asyncio.sleep(3 * STALL)  # beating: alive and well past stall_seconds
        assert store.get(job.id, TRAIN).status is JobStatus.RUNNING
        assert store.get(job.id, TRAIN).heartbeat_at is not None
        os.kill(worker.pid, signal.SIGSTOP)  # hung: the process lives, nothing moves
        assert await _status(store, job.id, JobStatus.FAILED) is JobStatus.FAILED
        failed = store.get(job.id, TRAIN)
        assert "the worker made no progress" in (failed.error or "")
        assert failed.owner is None and failed.status.is_resumable
        await asyncio.to_thread(worker.wait, WAIT)  # stopped by the replica
        for _ in range(int(WAIT / 0.1)):  # the reaper drops the process, then the lease
            if not manager.processes and not leases.held:
                break
            await asyncio.sleep(0.1)
        assert not manager.processes and leases.held == []
        assert store.get(job.id, TRAIN).status is JobStatus.FAILED  # the reaper keeps it
    finally:
        await manager.stop()
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        store.close()
