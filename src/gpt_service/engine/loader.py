"""Loading Hugging Face causal LMs (local directory or hub id) and PEFT LoRA adapters."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from gpt_service.engine.quantize import int8_weights, is_quantized
from gpt_service.errors import InvalidRequest, ModelNotFound

logger = logging.getLogger(__name__)

T = TypeVar("T")
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class LoadOptions:
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    allow_pickle_weights: bool = False


def set_num_threads(setting: int) -> int:
    """Torch intra-op threads for serving (0: keep torch's default); returns the count used."""
    if setting and torch.get_num_threads() != setting:
        torch.set_num_threads(setting)
    logger.info("torch uses %d intra-op thread(s)", torch.get_num_threads())
    return torch.get_num_threads()


async def on_own_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on a thread of its own that ends with it, awaited from the event loop.

    For torch work done once (loading a model): every thread that runs a parallel torch op
    keeps an OpenMP team for as long as it lives, and once libgomp manages more threads than
    there are cores it spins only ~1,000 times before sleeping, whatever ``GOMP_SPINCOUNT``
    says. A loading thread left in the default executor kept one such team, and the engine's
    OpenMP worker then slept and was woken 2,000-3,500 times a second (demo model, 2 cores,
    over HTTP, A/B of 4 rounds: 1 client 826 -> 1008 tok/s, 16 clients 1897 -> 2119 with the
    loading and idle compile threads' teams gone; README, Benchmark)."""
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # re-raised in the awaiting task
            future.set_exception(exc)

    threading.Thread(target=run, name=getattr(fn, "__name__", "torch-work"), daemon=True).start()
    return await asyncio.wrap_future(future)


def resolve_device(setting: str) -> torch.device:
    if setting == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    if setting == "cuda" and not torch.cuda.is_available():
        raise InvalidRequest("device 'cuda' requested but no CUDA device is available")
    return torch.device(setting)


def resolve_dtype(setting: str, device: torch.device) -> torch.dtype:
    if setting != "auto":
        return _DTYPES[setting]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32  # CPU half-precision matmuls are slow or missing on many CPUs


def load_tokenizer(source: str, options: LoadOptions) -> Any:
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=options.trust_remote_code)
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(source: str, options: LoadOptions) -> tuple[Any, Any, torch.device]:
    """Load model and tokenizer from a directory or hub id; raise ModelNotFound if absent."""
    device = resolve_device(options.device)
    dtype = resolve_dtype(options.dtype, device)
    try:
        tokenizer = load_tokenizer(source, options)
        model = AutoModelForCausalLM.from_pretrained(
            source,
            dtype=dtype,
            trust_remote_code=options.trust_remote_code,
            use_safetensors=None if options.allow_pickle_weights else True,
        )
    except OSError as exc:
        raise ModelNotFound(f"cannot load model from '{source}': {_first_line(exc)}") from exc
    except ValueError as exc:
        raise InvalidRequest(
            f"'{source}' is not a supported causal LM: {_first_line(exc)}"
        ) from exc
    model.to(device).eval()
    return model, tokenizer, device


def attach_adapter(model: Any, adapter_dir: Path, adapter_name: str) -> Any:
    """Add a LoRA adapter; the first one wraps the model into a ``PeftModel``."""
    from peft import PeftModel

    if not (adapter_dir / "adapter_config.json").is_file():
        raise ModelNotFound(f"no LoRA adapter (adapter_config.json) in '{adapter_dir}'")
    if is_quantized(model):
        raise InvalidRequest(
            "LoRA adapters need a model loaded without quantization (quantization 'none')"
        )
    try:
        if isinstance(model, PeftModel):
            model.load_adapter(str(adapter_dir), adapter_name=adapter_name)
            return model
        return PeftModel.from_pretrained(model, str(adapter_dir), adapter_name=adapter_name).eval()
    except (ValueError, KeyError, RuntimeError) as exc:
        raise InvalidRequest(
            f"adapter '{adapter_dir}' does not fit this model: {_first_line(exc)}"
        ) from exc


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    ids: list[int] = []
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (config_eos, tokenizer.eos_token_id):
        for item in value if isinstance(value, list) else [value]:
            if item is not None and item not in ids:
                ids.append(int(item))
    return ids


def context_length(model: Any, tokenizer: Any) -> int:
    config = model.config
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", 2048)
    return limit if limit < 1_000_000 else 2048


def count_parameters(model: Any) -> int:
    return sum(p.numel() for p in model.parameters()) + int8_weights(model)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
