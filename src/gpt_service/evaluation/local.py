"""``gpt-service evaluate``: the server's evaluation code run in the terminal, with a progress bar.

The model is loaded into a local registry (its own batching engine), the adapter is added as
a per-request adapter (so the result is labelled ``model:adapter``), and the evaluation is
stored in the data directory's job store like one run through the API.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gpt_service.config import Settings
from gpt_service.errors import ServiceError
from gpt_service.evaluation.runner import EvaluationManager
from gpt_service.evaluation.spec import EVAL, EvalRecord, EvalRequest
from gpt_service.services.generation import GenerationService
from gpt_service.store.jobs import JobStore
from gpt_service.store.leases import LeaseKeeper
from gpt_service.store.records import JobStatus

logger = logging.getLogger(__name__)


@dataclass
class LocalPaths:
    """User paths made absolute (relative to the working directory) with their allowed roots."""

    model_path: str
    adapter: str | None
    dataset: str
    model_dirs: list[Path] = field(default_factory=list)
    dataset_roots: list[Path] = field(default_factory=list)

    @classmethod
    def from_cli(cls, model_path: str, adapter: str | None, dataset: str) -> LocalPaths:
        paths = cls(model_path, adapter, dataset)
        if Path(model_path).exists():
            paths.model_path = str(Path(model_path).resolve())
            paths.model_dirs.append(Path(paths.model_path).parent)
        if adapter is not None and Path(adapter).exists():
            paths.adapter = str(Path(adapter).resolve())
            paths.model_dirs.append(Path(paths.adapter).parent)
        if Path(dataset).is_file():
            paths.dataset = str(Path(dataset).resolve())
            paths.dataset_roots.append(Path(paths.dataset).parent)
        return paths

    @property
    def model_name(self) -> str:
        name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(self.model_path.rstrip("/")).name)
        return name.lstrip("._-") or "model"


def follow(manager: EvaluationManager, eval_id: str, console: Console) -> asyncio.Task[None]:
    """A task that mirrors the stored progress in a progress bar until the run ends."""

    async def poll() -> None:
        columns = (
            TextColumn("[bold]{task.description:<11}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console) as bar:
            task = bar.add_task("queued", total=None)
            while True:
                record = await manager.get(eval_id)
                progress = record.progress
                phase = progress.phase or record.status.value
                done = progress.perplexity_done if phase == "perplexity" else progress.samples_done
                bar.update(
                    task, description=phase, total=progress.total_samples or None, completed=done
                )
                if record.status.is_stopped:
                    return
                await asyncio.sleep(0.2)

    return asyncio.create_task(poll())


def scores_table(record: EvalRecord) -> Table:
    result = record.result or {}
    details = result.get("details", {})
    table = Table(title=f"{result.get('model_name')}: {result.get('num_samples')} samples")
    table.add_column("metric")
    table.add_column("score", justify="right")
    table.add_column("details", overflow="fold")
    for name, score in (result.get("scores") or {}).items():
        shown = "-" if score is None else f"{score:.4f}"
        table.add_row(name, shown, _detail_text(name, details.get(name, {})))
    generation = result.get("generation", {})
    table.add_row(
        "tokens/s",
        f"{generation.get('tokens_per_second') or 0:.1f}",
        f"{generation.get('num_completion_tokens')} tokens in {generation.get('seconds')} s",
    )
    return table


def _detail_text(name: str, details: dict[str, Any]) -> str:
    if name == "rouge":
        return " ".join(f"{k}={details[k]:.4f}" for k in ("rouge1", "rouge2", "rougeL"))
    if name == "perplexity":
        return f"{details.get('num_tokens')} target tokens, {details.get('prompt_format')} prompt"
    return str(details.get("signature", ""))


async def _evaluate(
    settings: Settings, paths: LocalPaths, request: EvalRequest, console: Console
) -> EvalRecord:
    from gpt_service.engine.registry import ModelRegistry

    registry = ModelRegistry(settings)
    store = JobStore(settings.store_url)
    leases = LeaseKeeper(store, settings.job_lease_seconds, [EVAL], settings.replica_name)
    await leases.start()
    manager = EvaluationManager(
        settings,
        store,
        registry,
        GenerationService(registry, settings.limits.max_tokens),
        leases,
        dataset_roots=paths.dataset_roots,
    )
    try:
        name = paths.model_name
        console.print(f"loading {paths.model_path} ...")
        await registry.load(name, paths.model_path)
        if paths.adapter is not None:
            name = f"{name}:{await registry.add_adapter(name, paths.adapter)}"
        record = await manager.submit(request.model_copy(update={"model_name": name}))
        console.print(f"evaluation {record.id} of {name}")
        await follow(manager, record.id, console)
        return await manager.get(record.id)
    finally:
        await manager.stop()
        await leases.stop()
        await registry.close()


def run_local_evaluation(
    settings: Settings,
    paths: LocalPaths,
    request: EvalRequest,
    output: Path | None = None,
) -> int:
    """Run one evaluation in the foreground; the exit code says whether it completed."""
    console = Console(stderr=True)
    settings = settings.model_copy(
        update={"model_dirs": [*settings.model_dirs, *paths.model_dirs], "default_model": None}
    )
    settings.ensure_dirs()
    try:
        record = asyncio.run(_evaluate(settings, paths, request, console))
    except ServiceError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        return 2
    except KeyboardInterrupt:  # the run was cancelled and stored as interrupted
        console.print("interrupted")
        return 130
    if record.status != JobStatus.COMPLETED:
        console.print(f"[red]{record.status}:[/red] {record.error}")
        return 1
    Console().print(scores_table(record))
    if output is not None:
        params = record.params.model_dump(mode="json")
        result = {"eval_id": record.id, "params": params, **(record.result or {})}
        output.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
        console.print(f"results written to {output}")
    return 0
