"""Ollama's JSON shapes: errors, and the model entries of ``/api/tags``, ``/api/ps``, ``/api/show``."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from gpt_service.engine.chat import DEFAULT_CHAT_TEMPLATE
from gpt_service.services.local_catalog import CatalogEntry
from gpt_service.services.model_files import (
    DTYPE_BYTES,
    parameter_size,
    quantization_level,
    read_json,
)


def ollama_error(status: int, message: str) -> dict[str, Any]:
    """Ollama's error body, whatever the status: ``{"error": "..."}``."""
    return {"error": message}


# Models stay loaded until unloaded (keep_alive 0, POST /models/unload): no expiry to report.
NEVER_EXPIRES = "2318-01-01T00:00:00Z"


def timestamp(moment: datetime | None = None) -> str:
    """RFC 3339 in UTC with a ``Z``, as Ollama writes ``created_at``."""
    return (moment or datetime.now(UTC)).isoformat().replace("+00:00", "Z")


def _family(entry: CatalogEntry) -> str:
    if entry.files is not None:
        return entry.files.family
    arch = entry.loaded.info.architecture if entry.loaded else "unknown"
    return arch.removesuffix("ForCausalLM").removesuffix("LMHeadModel").lower() or "unknown"


def _num_parameters(entry: CatalogEntry) -> int:
    if entry.loaded is not None:
        return entry.loaded.info.num_parameters
    return entry.files.num_parameters if entry.files else 0


def _dtype(entry: CatalogEntry) -> str:
    if entry.loaded is not None:
        return entry.loaded.info.dtype
    return entry.files.dtype if entry.files else "float32"


def _digest(entry: CatalogEntry) -> str:
    """A stable identity of (weights, adapter, modification time), Ollama-style hex."""
    stamp = entry.files.modified_at.isoformat() if entry.files else ""
    raw = f"{entry.source}\n{entry.adapter_dir or ''}\n{stamp}"
    return hashlib.sha256(raw.encode()).hexdigest()


def details(entry: CatalogEntry) -> dict[str, Any]:
    family = _family(entry)
    return {
        "parent_model": entry.base if entry.adapter_dir else "",
        "format": "safetensors",
        "family": family,
        "families": [family],
        "parameter_size": parameter_size(_num_parameters(entry)),
        "quantization_level": quantization_level(_dtype(entry)),
    }


def _modified(entry: CatalogEntry) -> str:
    if entry.files is not None:
        return timestamp(entry.files.modified_at)
    if entry.loaded is not None:
        return timestamp(datetime.fromisoformat(entry.loaded.info.loaded_at))
    return timestamp()


def tag_entry(entry: CatalogEntry) -> dict[str, Any]:
    size = entry.files.size_bytes if entry.files else _memory_bytes(entry)
    return {
        "name": entry.name,
        "model": entry.name,
        "modified_at": _modified(entry),
        "size": size,
        "digest": _digest(entry),
        "details": details(entry),
    }


def _memory_bytes(entry: CatalogEntry) -> int:
    return _num_parameters(entry) * DTYPE_BYTES.get(_dtype(entry), 4)


def ps_entry(entry: CatalogEntry) -> dict[str, Any]:
    size = _memory_bytes(entry)
    loaded = entry.loaded
    is_gpu = bool(loaded and not loaded.info.device.startswith("cpu"))
    return {
        "name": entry.name,
        "model": entry.name,
        "size": size,
        "digest": _digest(entry),
        "details": details(entry),
        "expires_at": NEVER_EXPIRES,
        "size_vram": size if is_gpu else 0,
        "context_length": loaded.info.context_length if loaded else 0,
    }


def chat_template(entry: CatalogEntry) -> str:
    """The template ``/api/chat`` renders with (the model's own, or the ChatML fallback)."""
    own = getattr(entry.loaded.tokenizer, "chat_template", None) if entry.loaded else None
    if own is None and entry.files is not None:
        own = entry.files.chat_template
    return own or DEFAULT_CHAT_TEMPLATE


def _eos_token(entry: CatalogEntry) -> str | None:
    if entry.loaded is not None:
        return getattr(entry.loaded.tokenizer, "eos_token", None)
    if entry.files is None:
        return None
    eos = read_json(entry.files.path / "tokenizer_config.json").get("eos_token")
    return eos.get("content") if isinstance(eos, dict) else eos


def _context_length(entry: CatalogEntry) -> int | None:
    if entry.loaded is not None:
        return entry.loaded.info.context_length
    return entry.files.context_length if entry.files else None


def _parameters(entry: CatalogEntry) -> list[tuple[str, str]]:
    params = []
    if eos := _eos_token(entry):
        params.append(("stop", f'"{eos}"'))
    if ctx := _context_length(entry):
        params.append(("num_ctx", str(ctx)))
    return params


def model_info(entry: CatalogEntry) -> dict[str, Any]:
    family = _family(entry)
    config = entry.files.config if entry.files else {}
    info: dict[str, Any] = {
        "general.architecture": family,
        "general.basename": entry.base,
        "general.parameter_count": _num_parameters(entry),
    }
    keys = {
        "context_length": _context_length(entry),
        "embedding_length": config.get("hidden_size") or config.get("n_embd"),
        "block_count": config.get("num_hidden_layers") or config.get("n_layer"),
        "attention.head_count": config.get("num_attention_heads") or config.get("n_head"),
        "attention.head_count_kv": config.get("num_key_value_heads"),
        "vocab_size": config.get("vocab_size"),
    }
    info.update({f"{family}.{k}": v for k, v in keys.items() if v is not None})
    return info


def _adapter_dir(entry: CatalogEntry) -> str | None:
    if entry.adapter_dir:
        return entry.adapter_dir
    return entry.loaded.info.lora_adapter if entry.loaded else None


def show_body(entry: CatalogEntry) -> dict[str, Any]:
    template = chat_template(entry)
    params = _parameters(entry)
    modelfile = [
        "# Modelfile generated by gpt-service",
        f"FROM {entry.source}",
        *([f"ADAPTER {adapter}"] if (adapter := _adapter_dir(entry)) else []),
        f'TEMPLATE """{template}"""',
        *(f"PARAMETER {key} {value}" for key, value in params),
    ]
    return {
        "license": "",
        "modelfile": "\n".join(modelfile) + "\n",
        "parameters": "\n".join(f"{key:<30} {value}" for key, value in params),
        "template": template,
        "details": details(entry),
        "model_info": model_info(entry),
        "capabilities": ["completion", "tools"],
        "modified_at": _modified(entry),
    }
