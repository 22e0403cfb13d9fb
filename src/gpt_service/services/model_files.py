"""What a Hugging Face model directory holds, read from its files without loading it.

Only JSON and safetensors headers are read (no torch), so listing models stays cheap.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt")
MAX_HEADER_BYTES = 100 * 1024 * 1024
# safetensors dtype -> torch-style name
DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16"}
DTYPE_BYTES = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}


@dataclass(frozen=True)
class ModelFiles:
    path: Path
    config: dict[str, Any]
    num_parameters: int  # 0 when the weights are not safetensors
    dtype: str
    size_bytes: int
    chat_template: str | None
    modified_at: datetime

    @property
    def family(self) -> str:
        return str(self.config.get("model_type") or "unknown")

    @property
    def architecture(self) -> str:
        return str((self.config.get("architectures") or [self.family])[0])

    @property
    def context_length(self) -> int | None:
        for key in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
            if isinstance(self.config.get(key), int):
                return self.config[key]
        return None


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def inspect_dir(path: Path) -> ModelFiles | None:
    """The model directory's description, or ``None`` when it holds no ``config.json``."""
    config_file = path / "config.json"
    try:
        stamp = config_file.stat().st_mtime_ns
    except OSError:
        return None
    return _inspect(str(path.resolve()), stamp)


@lru_cache(maxsize=64)
def _inspect(path_str: str, stamp: int) -> ModelFiles:
    path = Path(path_str)
    config = read_json(path / "config.json")
    weights = [f for pattern in WEIGHT_PATTERNS for f in sorted(path.glob(pattern))]
    num_parameters, counted_dtype = _safetensors_parameters(
        [f for f in weights if f.suffix == ".safetensors"]
    )
    dtype = str(config.get("dtype") or config.get("torch_dtype") or counted_dtype or "float32")
    return ModelFiles(
        path=path,
        config=config,
        num_parameters=num_parameters,
        dtype=dtype,
        size_bytes=sum(f.stat().st_size for f in weights),
        chat_template=_chat_template(path),
        modified_at=datetime.fromtimestamp(stamp / 1e9, tz=UTC),
    )


def _safetensors_parameters(files: list[Path]) -> tuple[int, str | None]:
    """Parameter count and dominant dtype from the files' JSON headers."""
    numel: Counter[str] = Counter()
    for file in files:
        try:
            with file.open("rb") as f:
                size = int.from_bytes(f.read(8), "little")
                if size > MAX_HEADER_BYTES:
                    raise ValueError("header too large")
                header = json.loads(f.read(size))
        except (OSError, ValueError) as exc:
            logger.warning("could not read the safetensors header of %s: %s", file, exc)
            continue
        for name, meta in header.items():
            if name != "__metadata__" and isinstance(meta, dict):
                numel[str(meta.get("dtype"))] += math.prod(meta.get("shape") or [])
    if not numel:
        return 0, None
    dominant = numel.most_common(1)[0][0]
    return sum(numel.values()), DTYPES.get(dominant, dominant.lower())


def _chat_template(path: Path) -> str | None:
    jinja = path / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    template = read_json(path / "tokenizer_config.json").get("chat_template")
    return template if isinstance(template, str) else None


def parameter_size(num_parameters: int) -> str:
    """Ollama's style: ``"7.6B"``, ``"494.0M"``, ``"212.5K"``."""
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if num_parameters >= scale:
            return f"{num_parameters / scale:.1f}{suffix}"
    return str(num_parameters)


def quantization_level(dtype: str) -> str:
    return {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64"}.get(
        dtype, dtype.upper()
    )
