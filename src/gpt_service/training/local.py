"""``gpt-service train``: the same job row and worker as the server, followed in a terminal."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gpt_service.config import Settings
from gpt_service.errors import Conflict, ServiceError
from gpt_service.store.jobs import JobStore
from gpt_service.store.leases import LeaseKeeper
from gpt_service.store.records import JobStatus, now_iso
from gpt_service.training import launcher
from gpt_service.training.config import TRAIN, TrainJob, TrainJobSpec
from gpt_service.training.jobs import JobManager

logger = logging.getLogger(__name__)


def _manager(settings: Settings, store: JobStore) -> JobManager:
    from gpt_service.engine.registry import ModelRegistry

    leases = LeaseKeeper(store, settings.job_lease_seconds, [TRAIN], settings.replica_name)
    return JobManager(settings, store, ModelRegistry(settings), leases)


def claim_job(
    settings: Settings, store: JobStore, spec: TrainJobSpec | None, resume_id: str | None
) -> tuple[TrainJob, LeaseKeeper]:
    """Queue the job (new, or again with ``JobManager.resume``'s checks), then claim it for
    this process at once, before a server on the same store does."""
    manager = _manager(settings, store)
    queue = manager.resume(resume_id) if resume_id else manager.submit(spec)  # type: ignore[arg-type]
    job = asyncio.run(queue)
    lease = manager.leases.lease_seconds
    claimed = store.claim(TRAIN, manager.leases.owner, 1, lease, job_id=job.id)
    if not claimed:
        raise Conflict(f"a server took job '{job.id}' first; follow it there")
    return claimed[0], manager.leases


def follow(
    store: JobStore,
    job_id: str,
    process: subprocess.Popen[bytes],
    console: Console,
    leases: LeaseKeeper,
) -> None:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("epoch {task.fields[epoch]:.2f}  loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        TextColumn("eta {task.fields[eta]}"),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("training", total=None, epoch=0.0, loss="-", eta="-")
        renewed = time.monotonic()
        leases.hold(job_id, lambda _: launcher.stop(process, 5.0))
        while process.poll() is None:
            progress = store.get(job_id, TRAIN).progress
            loss, eta = progress.loss, progress.eta_seconds
            bar.update(
                task,
                total=progress.total_steps or None,
                completed=progress.current_step,
                epoch=progress.epoch,
                loss=f"{loss:.4f}" if loss is not None else "-",
                eta=f"{eta:.0f}s" if eta is not None else "-",
            )
            if time.monotonic() - renewed > leases.interval:
                leases.renew()  # stops the worker if the job was cancelled from a server
                renewed = time.monotonic()
            time.sleep(0.5)


def run_local(
    settings: Settings, spec: TrainJobSpec | None = None, resume_id: str | None = None
) -> int:
    """Run one job in the foreground; the exit code says whether it completed."""
    console = Console(stderr=True)
    settings.ensure_dirs()
    store = JobStore(settings.store_url)
    try:
        job, leases = claim_job(settings, store, spec, resume_id)
    except ServiceError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        return 2
    console.print(
        f"job {job.id}: {job.params.output_dir} (log: {launcher.log_path(settings, job.id)})"
    )
    process = launcher.launch(settings, store, job)
    if job.params.spec.num_nodes > 1:
        others = job.params.spec.num_nodes - 1
        console.print(f"waiting for {others} more node(s): run `gpt-service join {job.id}` there")
    try:
        follow(store, job.id, process, console, leases)
    except KeyboardInterrupt:
        launcher.stop(process, 5.0)
        store.update(
            job.id,
            only_if=[JobStatus.RUNNING],
            status=JobStatus.INTERRUPTED,
            finished_at=now_iso(),
        )
        console.print(f"interrupted; resume with: gpt-service train --resume {job.id}")
        return 130
    job = launcher.finalize(settings, store, job.id, process.returncode)
    if job.status != JobStatus.COMPLETED:
        console.print(f"[red]{job.status}:[/red] {job.error}")
        return 1
    metrics = job.result or {}
    console.print(
        f"[green]completed[/green]: adapter in {job.params.output_path} "
        f"(train_loss {metrics.get('train_loss', float('nan')):.4f}, "
        f"{metrics.get('train_runtime', 0):.0f}s)"
    )
    return 0


def join_job(settings: Settings, job_id: str, wait_seconds: float = 600.0) -> int:
    """``gpt-service join``: this machine's share of a multi-node job. Waits for a replica to
    start the job (its rendezvous), then runs ``num_processes`` ranks here under torchrun."""
    console = Console(stderr=True)
    store = JobStore(settings.store_url, migrate=False)
    deadline = time.monotonic() + wait_seconds
    job = store.get(job_id, TRAIN)
    while job.status != JobStatus.RUNNING or not job.params.rendezvous:
        if job.status.is_stopped or time.monotonic() > deadline:
            console.print(f"[red]error:[/red] job {job_id} is {job.status}, not starting")
            return 2
        time.sleep(0.5)
        job = store.get(job_id, TRAIN)
    if job.params.spec.num_nodes <= 1:
        console.print(f"[red]error:[/red] job {job_id} runs on one node; nothing to join")
        return 2
    command = launcher.worker_command(job, os.getpid(), first_node=False)
    console.print(f"joining job {job_id} at {job.params.rendezvous}")
    env = launcher.worker_env(settings, job.params.spec.num_processes)
    process = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        return process.wait()
    except KeyboardInterrupt:
        return launcher.stop(process, 5.0)
