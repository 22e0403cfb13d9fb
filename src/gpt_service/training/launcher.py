"""Worker processes: start one (or a ``torchrun`` group), stop it, and record how it ended.

Synchronous on purpose, so the server's ``JobManager`` and the CLI share it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections import deque
from pathlib import Path

from gpt_service.config import Settings
from gpt_service.store.sqlite import JobRecord, JobStore, now_iso
from gpt_service.training.config import JobStatus

logger = logging.getLogger(__name__)

LOG_TAIL_LINES = 15


def log_path(settings: Settings, job_id: str) -> Path:
    return settings.data_dir / "logs" / f"train-{job_id}.log"


def worker_command(job: JobRecord, db_path: Path, parent_pid: int) -> list[str]:
    worker = ["-m", "gpt_service.training.worker", "--job-id", job.id, "--db", str(db_path)]
    worker += ["--parent-pid", str(parent_pid)]
    num_processes = int(job.params["spec"].get("num_processes", 1))
    if num_processes <= 1:
        return [sys.executable, *worker]
    # Data-parallel: torchrun starts one worker per rank (gloo on CPU, nccl on GPU).
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return [*launcher, "--nproc-per-node", str(num_processes), *worker]


def worker_env(settings: Settings, num_processes: int) -> dict[str, str]:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see cli.main: no spinning next to the server
    env["OMP_NUM_THREADS"] = str(num_threads(settings, num_processes))
    return env


def num_threads(settings: Settings, num_processes: int) -> int:
    """Torch threads per worker process: the setting, else half the cores over the ranks."""
    if settings.training.num_threads:
        return settings.training.num_threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // (2 * num_processes))


def launch(settings: Settings, store: JobStore, job: JobRecord) -> subprocess.Popen[bytes]:
    """Start the worker in its own process group (so a cancel reaches every rank)."""
    path = log_path(settings, job.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    num_processes = int(job.params["spec"].get("num_processes", 1))
    command = worker_command(job, settings.db_path, os.getpid())
    with path.open("ab") as log:
        log.write(f"\n=== {now_iso()} start: {' '.join(command)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=worker_env(settings, num_processes),
            start_new_session=True,
        )
    attempts = int(job.params.get("attempts", 0)) + 1
    params = {**job.params, "attempts": attempts, "owner_pid": os.getpid()}
    store.update(
        job.id,
        status=JobStatus.RUNNING.value,
        params=params,
        started_at=job.started_at or now_iso(),
        finished_at=None,
        error=None,
    )
    logger.info("training job %s started (pid %d, log %s)", job.id, process.pid, path)
    return process


def stop(process: subprocess.Popen[bytes], grace: float = 10.0) -> int:
    """SIGTERM the worker's process group, then SIGKILL after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        if process.poll() is not None:
            break
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    return process.wait()


def log_tail(settings: Settings, job_id: str, lines: int = LOG_TAIL_LINES) -> str:
    path = log_path(settings, job_id)
    if not path.exists():
        return ""
    with path.open(errors="replace") as handle:
        return "".join(deque(handle, maxlen=lines)).strip()


def exit_reason(returncode: int) -> str:
    if returncode < 0:
        name = signal.Signals(-returncode).name
        hint = " (out of memory?)" if -returncode == signal.SIGKILL else ""
        return f"worker killed by {name}{hint}"
    return f"worker exited with code {returncode}"


def finalize(settings: Settings, store: JobStore, job_id: str, returncode: int) -> JobRecord:
    """After the worker exits: ``completed`` if it saved a result, else ``failed`` (a crash,
    an OOM kill) with the tail of its log. A job no longer ``running`` (cancelled...) stays.
    """
    job = store.get(job_id, kind="train")
    if job.status != JobStatus.RUNNING.value:
        return job
    if returncode == 0 and job.result is not None:
        store.update(job_id, status=JobStatus.COMPLETED.value, finished_at=now_iso())
        logger.info("training job %s completed", job_id)
    else:
        tail = log_tail(settings, job_id)
        reason = exit_reason(returncode) if returncode else "worker exited without a result"
        error = job.error or (f"{reason}; last log lines:\n{tail}" if tail else reason)
        store.update(job_id, status=JobStatus.FAILED.value, error=error, finished_at=now_iso())
        logger.warning("training job %s failed: %s", job_id, error.splitlines()[0])
    return store.get(job_id, kind="train")
