"""Worker processes: start one (or a ``torchrun`` group), stop it, and record how it ended.

Synchronous on purpose, so the server's ``JobManager`` and the CLI share it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from collections import deque
from pathlib import Path

from gpt_service.config import SERVER_OMP_MARK, Settings
from gpt_service.store.jobs import JobStore
from gpt_service.store.records import JobStatus, now_iso
from gpt_service.training.config import TRAIN, TrainJob

logger = logging.getLogger(__name__)

LOG_TAIL_LINES = 15


def log_path(settings: Settings, job_id: str) -> Path:
    return settings.data_dir / "logs" / f"train-{job_id}.log"


def worker_command(job: TrainJob, parent_pid: int, first_node: bool = True) -> list[str]:
    """The worker, or the ``torchrun`` launcher of one node of it.

    One node, one process: the worker itself. One node, several processes: torchrun
    ``--standalone``. Several nodes: torchrun with a c10d rendezvous at ``params.rendezvous``,
    hosted by the first node (the replica that claimed the job); every other node runs the
    same command with ``first_node=False`` (``gpt-service join``).
    """
    worker = ["-m", "gpt_service.training.worker", "--job-id", job.id]
    worker += ["--parent-pid", str(parent_pid)]
    spec = job.params.spec
    if spec.num_processes <= 1 and spec.num_nodes <= 1:
        return [sys.executable, *worker]
    launcher = [sys.executable, "-m", "torch.distributed.run"]
    if spec.num_nodes <= 1:
        launcher.append("--standalone")
    else:
        launcher += ["--nnodes", str(spec.num_nodes), "--rdzv-backend", "c10d"]
        launcher += ["--rdzv-endpoint", str(job.params.rendezvous), "--rdzv-id", job.id]
        launcher += ["--rdzv-conf", f"is_host={int(first_node)}", "--max-restarts", "0"]
    return [*launcher, "--nproc-per-node", str(spec.num_processes), *worker]


def rendezvous_endpoint(settings: Settings) -> str:
    """A free port on this replica for a multi-node job's c10d store."""
    with socket.socket() as sock:
        sock.bind((settings.training.rendezvous_host, 0))
        port = sock.getsockname()[1]
    return f"{settings.training.rendezvous_host}:{port}"


def worker_env(settings: Settings, num_processes: int) -> dict[str, str]:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    env["GPT_SERVICE_DATABASE_URL"] = settings.store_url  # not in argv: it may hold a password
    if env.pop(SERVER_OMP_MARK, None):  # the server's own ACTIVE policy is not for workers
        env["OMP_WAIT_POLICY"] = "PASSIVE"
        env.pop("GOMP_SPINCOUNT", None)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see cli.main: no spinning next to the server
    env["OMP_NUM_THREADS"] = str(num_threads(settings, num_processes))
    return env


def num_threads(settings: Settings, num_processes: int) -> int:
    """Torch threads per worker process: the setting, else half the cores over the ranks."""
    if settings.training.num_threads:
        return settings.training.num_threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // (2 * num_processes))


def launch(settings: Settings, store: JobStore, job: TrainJob) -> subprocess.Popen[bytes]:
    """Start the worker of a job this process holds (claimed, or created ``running``), in
    its own process group (so a cancel reaches every rank)."""
    path = log_path(settings, job.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = job.params.spec
    params = job.params.model_copy(update={"attempts": job.params.attempts + 1})
    if spec.num_nodes > 1:
        params.rendezvous = rendezvous_endpoint(settings)
    store.update(job.id, params=params, started_at=job.started_at or now_iso())
    command = worker_command(job.model_copy(update={"params": params}), os.getpid())
    with path.open("ab") as log:
        log.write(f"\n=== {now_iso()} start: {' '.join(command)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=worker_env(settings, spec.num_processes),
            start_new_session=True,
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
            if sig == signal.SIGTERM:  # a stopped (SIGSTOP, ^Z) worker acts on it only when woken
                os.killpg(process.pid, signal.SIGCONT)
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


def finalize(settings: Settings, store: JobStore, job_id: str, returncode: int) -> TrainJob:
    """After the worker exits: ``completed`` if it saved a result, else ``failed`` (a crash,
    an OOM kill) with the tail of its log. A job no longer ``running`` (cancelled...) stays.
    """
    job = store.get(job_id, TRAIN)
    if job.status != JobStatus.RUNNING:
        return job
    done = {"finished_at": now_iso(), "owner": None, "lease_expires_at": None}
    if returncode == 0 and job.result is not None:
        if store.update(job_id, only_if=[JobStatus.RUNNING], status=JobStatus.COMPLETED, **done):
            logger.info("training job %s completed", job_id)
    else:
        tail = log_tail(settings, job_id)
        reason = exit_reason(returncode) if returncode else "worker exited without a result"
        error = job.error or (f"{reason}; last log lines:\n{tail}" if tail else reason)
        running = [JobStatus.RUNNING]
        if store.update(job_id, only_if=running, status=JobStatus.FAILED, error=error, **done):
            logger.warning("training job %s failed: %s", job_id, error.splitlines()[0])
    return store.get(job_id, TRAIN)
