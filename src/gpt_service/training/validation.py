"""Submit-time checks: a job that cannot run is refused before it gets a row in the store."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from gpt_service.config import DEMO_DATA_DIR, Settings
from gpt_service.errors import InvalidRequest, ModelNotFound, NotFound
from gpt_service.paths import find_file, looks_like_hub_id, resolve_inside
from gpt_service.training.config import TrainJobSpec, TrainParams
from gpt_service.training.datasets import load_examples

if TYPE_CHECKING:
    from gpt_service.engine.registry import ModelRegistry


class DatasetNotFound(NotFound):
    pass


class OutputDirTaken(InvalidRequest):
    pass


def resolve_dataset(settings: Settings, dataset_path: str) -> Path:
    """Inside the data directory, or a file of the bundled demo data (by its bare name)."""
    return find_file(dataset_path, settings.data_dir, [DEMO_DATA_DIR], DatasetNotFound)


def default_output_dir(spec: TrainJobSpec) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    base = Path(spec.base_model.rstrip("/")).name or "model"
    return f"models/lora/{base}-{stamp}"


def resolve_output(settings: Settings, output_dir: str, overwrite: bool) -> Path:
    path = resolve_inside(output_dir, settings.data_dir, [settings.data_dir])
    if path == settings.data_dir.resolve():
        raise InvalidRequest("output_dir must be a subdirectory of the data directory")
    if path.exists() and not path.is_dir():
        raise InvalidRequest(f"output_dir '{output_dir}' is a file")
    if (path / "adapter_config.json").exists() and not overwrite:
        raise OutputDirTaken(
            f"output_dir '{output_dir}' already holds an adapter; "
            "choose another directory or set overwrite: true"
        )
    return path


def resolve_base_model(spec: TrainJobSpec, registry: ModelRegistry) -> str:
    """A loaded model's source, a local model directory, or a hub id found in the cache."""
    if spec.base_model in registry.models:
        model = registry.models[spec.base_model]
        if model.is_remote and not model.spec.weights_path:
            raise InvalidRequest(
                f"'{spec.base_model}' is served by a remote engine and has no local weights to "
                "train on: register it with model_path (a local copy of its weights)"
            )
        return model.source
    source = registry.resolve_source(spec.base_model)
    if Path(source).is_dir():
        if not (Path(source) / "config.json").is_file():
            raise ModelNotFound(f"'{spec.base_model}' holds no model (config.json is missing)")
        return source
    if looks_like_hub_id(source) and not _hub_model_available(source):
        raise ModelNotFound(
            f"'{spec.base_model}' is neither a loaded model, a local model directory, "
            "nor a hub model in the local cache (the hub is offline)"
        )
    return source


def _hub_model_available(repo_id: str) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("1", "true", "yes"):
        return True  # the worker may download it
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def check_processes(spec: TrainJobSpec, settings: Settings) -> None:
    if spec.num_processes > 1 and settings.device in ("cuda", "auto"):
        import torch  # only the server/CLI side; the api layer never imports this module

        num_gpus = torch.cuda.device_count()
        if num_gpus and spec.num_processes > num_gpus:
            raise InvalidRequest(f"num_processes={spec.num_processes} but {num_gpus} GPU(s)")


def check_token_indices(spec: TrainJobSpec, base_model_path: str) -> None:
    """Token ids past the base model's vocabulary are refused now, not after loading it."""
    top = spec.max_token_index()
    config = Path(base_model_path) / "config.json"
    if top is None or not config.is_file():
        return
    cfg = json.loads(config.read_text(encoding="utf-8"))
    vocab = cfg.get("vocab_size") or cfg.get("text_config", {}).get("vocab_size")
    if isinstance(vocab, int) and top >= vocab:
        raise InvalidRequest(
            f"trainable_token_indices: token id {top} is outside the base model's "
            f"vocabulary (vocab_size {vocab})"
        )


def prepare_job(spec: TrainJobSpec, settings: Settings, registry: ModelRegistry) -> TrainParams:
    """Check everything that can be checked now; return the job row's parameters.

    Blocking (reads the dataset): call it in a thread from async code.
    """
    try:
        return _prepare(spec, settings, registry)
    except (OSError, ValueError) as exc:
        if isinstance(exc, InvalidRequest):
            raise
        # A NUL byte or an over-long name in a path is the request's fault, not the server's.
        raise InvalidRequest(f"unusable path in the request: {exc}") from None


def _prepare(spec: TrainJobSpec, settings: Settings, registry: ModelRegistry) -> TrainParams:
    dataset_file = resolve_dataset(settings, spec.dataset_path)
    examples = load_examples(dataset_file, spec.dataset_format)
    base_model_path = resolve_base_model(spec, registry)
    check_token_indices(spec, base_model_path)
    output_dir = spec.output_dir or default_output_dir(spec)
    output_path = resolve_output(settings, output_dir, spec.overwrite)
    check_processes(spec, settings)
    return TrainParams(
        spec=spec,
        base_model_path=base_model_path,
        dataset_file=str(dataset_file),
        num_examples=len(examples),
        output_dir=output_dir,
        output_path=str(output_path),
        device=settings.device,
        dtype=settings.dtype,
        trust_remote_code=settings.trust_remote_code,
    )
