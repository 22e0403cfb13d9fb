"""``gpt-service train``: the same job row and worker as the server, followed in a terminal."""

from __future__ import annotations

import logging
import subprocess
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gpt_service.config import Settings
from gpt_service.errors import Conflict, ServiceError
from gpt_service.store.sqlite import JobRecord, JobStore, now_iso
from gpt_service.training import launcher
from gpt_service.training.config import JobStatus, TrainJobSpec

logger = logging.getLogger(__name__)


def create_job(settings: Settings, store: JobStore, spec: TrainJobSpec) -> JobRecord:
    from gpt_service.engine.registry import ModelRegistry
    from gpt_service.training.validation import prepare_job

    params = prepare_job(spec, settings, ModelRegistry(settings))
    return store.create("train", params)


def requeue_job(store: JobStore, job_id: str) -> JobRecord:
    job = store.get(job_id, kind="train")
    if not JobStatus(job.status).is_resumable:
        raise Conflict(f"job '{job_id}' is {job.status}; it cannot resume")
    store.update(job_id, status="queued", params={**job.params, "resume": True}, error=None)
    return store.get(job_id, kind="train")


def follow(
    store: JobStore, job_id: str, process: subprocess.Popen[bytes], console: Console
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
        while process.poll() is None:
            progress = store.get(job_id).progress
            loss = progress.get("loss")
            eta = progress.get("eta_seconds")
            bar.update(
                task,
                total=progress.get("total_steps") or None,
                completed=progress.get("current_step", 0),
                epoch=progress.get("epoch", 0.0),
                loss=f"{loss:.4f}" if loss is not None else "-",
                eta=f"{eta:.0f}s" if eta is not None else "-",
            )
            time.sleep(0.5)


def run_local(
    settings: Settings, spec: TrainJobSpec | None = None, resume_id: str | None = None
) -> int:
    """Run one job in the foreground; the exit code says whether it completed."""
    console = Console(stderr=True)
    settings.ensure_dirs()
    store = JobStore(settings.db_path)
    try:
        job = requeue_job(store, resume_id) if resume_id else create_job(settings, store, spec)  # type: ignore[arg-type]
    except ServiceError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        return 2
    console.print(
        f"job {job.id}: {job.params['output_dir']} (log: {launcher.log_path(settings, job.id)})"
    )
    process = launcher.launch(settings, store, job)
    try:
        follow(store, job.id, process, console)
    except KeyboardInterrupt:
        launcher.stop(process, 5.0)
        store.update(job.id, status=JobStatus.INTERRUPTED.value, finished_at=now_iso())
        console.print(f"interrupted; resume with: gpt-service train --resume {job.id}")
        return 130
    job = launcher.finalize(settings, store, job.id, process.returncode)
    if job.status != JobStatus.COMPLETED.value:
        console.print(f"[red]{job.status}:[/red] {job.error}")
        return 1
    metrics = job.result or {}
    console.print(
        f"[green]completed[/green]: adapter in {job.params['output_path']} "
        f"(train_loss {metrics.get('train_loss', float('nan')):.4f}, "
        f"{metrics.get('train_runtime', 0):.0f}s)"
    )
    return 0
