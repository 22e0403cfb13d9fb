"""Command line: ``gpt-service serve`` (and local ``train`` / ``evaluate``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from gpt_service.config import SERVER_OMP_MARK
from gpt_service.log_noise import silence_known_noise

app = typer.Typer(help="gpt-service: serve, fine-tune and evaluate LLMs", no_args_is_help=True)


def _settings(serving: bool = False, **overrides: object):  # noqa: ANN202 - deferred import
    """The settings, or one readable line naming the bad variable and exit status 2 (a job
    store that cannot be reached included: every command uses it)."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from gpt_service.config import InvalidSettings, Settings, check_startup, describe_settings_error
    from gpt_service.store.engine import unreachable

    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
        if serving:
            check_startup(settings)
    except (ValidationError, SettingsError) as exc:
        _fail(describe_settings_error(exc))
    except InvalidSettings as exc:
        _fail(str(exc))
    reason = unreachable(settings.store_url)
    if reason is not None:
        _fail(f"GPT_SERVICE_DATABASE_URL: {reason}")
    return settings


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    model: Annotated[str | None, typer.Option(help="model to preload (name)")] = None,
    model_path: Annotated[
        str | None, typer.Option(help="directory or hub id of the model to preload")
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help="data directory")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | mps")] = None,
    dtype: Annotated[str | None, typer.Option(help="auto | float32 | float16 | bfloat16")] = None,
    quantization: Annotated[
        str | None, typer.Option(help="none | int8: linear-layer weights of local models")
    ] = None,
    log_level: Annotated[str, typer.Option(help="logging level")] = "info",
) -> None:
    """Start the HTTP server (Swagger UI at /docs)."""
    import uvicorn

    from gpt_service.app import create_app

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = _settings(
        serving=True,
        default_model=model,
        default_model_path=model_path,
        data_dir=data_dir,
        device=device,
        dtype=dtype,
        engine={"quantization": quantization} if quantization else None,
        log_level=log_level.upper(),
    )
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=log_level.lower(),
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
    )


@app.command()
def train(
    base_model: Annotated[
        str | None, typer.Argument(help="loaded-model name, model directory or hub id")
    ] = None,
    dataset_path: Annotated[
        str | None, typer.Argument(help="json/jsonl/csv file (data dir or bundled demo data)")
    ] = None,
    output_dir: Annotated[
        str | None, typer.Option(help="adapter directory in the data dir")
    ] = None,
    num_epochs: Annotated[float | None, typer.Option(help="epochs")] = None,
    batch_size: Annotated[int | None, typer.Option(help="examples per step and process")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="peak learning rate")] = None,
    dataset_format: Annotated[str | None, typer.Option(help="auto | json | jsonl | csv")] = None,
    lora_r: Annotated[int | None, typer.Option(help="LoRA rank")] = None,
    lora_alpha: Annotated[int | None, typer.Option(help="LoRA alpha")] = None,
    max_seq_length: Annotated[int | None, typer.Option(help="cut longer examples")] = None,
    max_steps: Annotated[int | None, typer.Option(help="stop after this many steps")] = None,
    save_steps: Annotated[int | None, typer.Option(help="checkpoint interval")] = None,
    eval_split: Annotated[float | None, typer.Option(help="held-out fraction")] = None,
    num_processes: Annotated[int | None, typer.Option(help=">1: torchrun data-parallel")] = None,
    num_nodes: Annotated[int | None, typer.Option(help=">1: others run `join`")] = None,
    seed: Annotated[int | None, typer.Option(help="random seed")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an adapter in output_dir")] = False,
    resume: Annotated[str | None, typer.Option(help="resume this job id instead")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="data directory")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | mps")] = None,
) -> None:
    """Fine-tune a LoRA adapter in the foreground, with a progress bar (same job store)."""
    from pydantic import ValidationError

    from gpt_service.training.config import TrainJobSpec
    from gpt_service.training.local import run_local

    logging.basicConfig(level="WARNING")
    settings = _settings(data_dir=data_dir, device=device)
    if resume:
        raise typer.Exit(run_local(settings, resume_id=resume))
    options = {
        "base_model": base_model, "dataset_path": dataset_path, "output_dir": output_dir,
        "num_epochs": num_epochs, "batch_size": batch_size, "learning_rate": learning_rate,
        "dataset_format": dataset_format, "lora_r": lora_r, "lora_alpha": lora_alpha,
        "max_seq_length": max_seq_length, "max_steps": max_steps, "save_steps": save_steps,
        "eval_split": eval_split, "num_processes": num_processes, "seed": seed,
        "num_nodes": num_nodes,
    }  # fmt: skip
    try:
        spec = TrainJobSpec(
            **{k: v for k, v in options.items() if v is not None}, overwrite=overwrite
        )
    except ValidationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(run_local(settings, spec))


@app.command()
def join(
    job_id: Annotated[str, typer.Argument(help="a multi-node training job (num_nodes > 1)")],
    data_dir: Annotated[Path | None, typer.Option(help="data directory (shared)")] = None,
) -> None:
    """Run this machine's processes of a multi-node training job (same job store and data
    directory as the replicas: GPT_SERVICE_DATABASE_URL, shared storage)."""
    from gpt_service.training.local import join_job

    logging.basicConfig(level="WARNING")
    raise typer.Exit(join_job(_settings(data_dir=data_dir), job_id))


@app.command()
def evaluate(
    dataset: Annotated[str, typer.Option(help="json/jsonl/csv file (path, or in data/demo dir)")],
    model_path: Annotated[str, typer.Option(help="model directory, or 'demo'")] = "demo",
    adapter: Annotated[str | None, typer.Option(help="LoRA adapter directory")] = None,
    metrics: Annotated[
        str, typer.Option(help="comma-separated")
    ] = "perplexity,exact_match,bleu,rouge,chrf",
    max_samples: Annotated[int | None, typer.Option(help="only the first N samples")] = None,
    max_tokens: Annotated[int, typer.Option(help="new tokens per prediction")] = 128,
    temperature: Annotated[float, typer.Option(help="0 is greedy")] = 0.0,
    chat_template: Annotated[bool, typer.Option(help="wrap inputs in the chat template")] = True,
    bleu_tokenize: Annotated[str | None, typer.Option(help="13a | zh | intl | char")] = None,
    ignore_case: Annotated[bool, typer.Option(help="exact_match ignores case")] = False,
    ignore_punctuation: Annotated[bool, typer.Option(help="exact_match ignores punct.")] = False,
    output: Annotated[Path | None, typer.Option(help="write the full results as JSON")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="data directory (job store)")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | mps")] = None,
) -> None:
    """Evaluate a model (and adapter) on a dataset locally, with a progress bar and scores."""
    from pydantic import ValidationError

    from gpt_service.evaluation.local import LocalPaths, run_local_evaluation
    from gpt_service.evaluation.spec import EvalRequest

    logging.basicConfig(level="WARNING")
    paths = LocalPaths.from_cli(model_path, adapter, dataset)
    options = {
        "dataset_path": paths.dataset, "metrics": [m.strip() for m in metrics.split(",")],
        "max_samples": max_samples, "max_tokens": max_tokens, "temperature": temperature,
        "use_chat_template": chat_template, "bleu_tokenize": bleu_tokenize,
        "ignore_case": ignore_case, "ignore_punctuation": ignore_punctuation,
    }  # fmt: skip
    try:
        request = EvalRequest(**{k: v for k, v in options.items() if v is not None})
    except ValidationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    settings = _settings(data_dir=data_dir, device=device)
    raise typer.Exit(run_local_evaluation(settings, paths, request, output))


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    silence_known_noise()
    # OpenMP threads spin only briefly (~0.1 ms) before sleeping (set before torch loads): long
    # enough to keep up with the back-to-back ops of a decode step, short enough to leave the
    # cores to the event loop, the clients and training workers (which run PASSIVE) when the
    # engine waits. On 2 cores a 16-row decode step took 6.2 ms (2 threads, this spin), 7.8 ms
    # (1 thread), 10.1 ms (2 threads, PASSIVE). Once libgomp manages more threads than cores it
    # spins at most 1,000 times whatever this says (ACTIVE; 100 unset): torch work off the
    # engine thread runs on threads that end, so their OpenMP teams go (loader.on_own_thread,
    # the compile thread). An explicit OMP_WAIT_POLICY wins; training workers run PASSIVE.
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "ACTIVE"
        os.environ.setdefault("GOMP_SPINCOUNT", "100000")
        os.environ[SERVER_OMP_MARK] = "1"
    app()


if __name__ == "__main__":
    main()
