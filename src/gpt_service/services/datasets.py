"""Dataset files a training or evaluation job can use: ``<data_dir>/datasets`` and the demo data.

Each file is listed with the ``path`` to send as ``dataset_path`` (relative to the data
directory, or the bare name of a bundled demo file, as the jobs resolve them), its size and
its number of rows. Torch-free and fast: rows are counted by streaming the file, and big
JSON arrays are not parsed at all.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

logger = logging.getLogger(__name__)

FORMATS = {".json": "json", ".jsonl": "jsonl", ".csv": "csv"}
# A JSON array has to be parsed whole to be counted; past this size the count is skipped.
MAX_JSON_COUNT_BYTES = 32 * 1024 * 1024

Source = Literal["data", "demo"]


@dataclass(frozen=True)
class DatasetFile:
    name: str
    path: str
    source: Source
    format: str
    size_bytes: int
    num_rows: int | None


def count_rows(path: Path, fmt: str) -> int | None:
    """Rows of a dataset file, or ``None`` when it cannot be told cheaply (or is malformed)."""
    try:
        if fmt == "jsonl":
            with path.open("rb") as handle:
                return sum(1 for line in handle if line.strip())
        if fmt == "csv":
            with path.open(newline="", encoding="utf-8") as handle:
                # csv.reader, not a line count: quoted fields may hold newlines.
                return max(sum(1 for row in csv.reader(handle) if row) - 1, 0)
        if path.stat().st_size > MAX_JSON_COUNT_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as exc:
        logger.info("cannot count the rows of %s: %s", path, exc)
        return None
    return len(data) if isinstance(data, list) else None


def _files(root: Path) -> list[Path]:
    """Dataset files under ``root`` whose real location is inside it (no symlink escapes)."""
    if not root.is_dir():
        return []
    real_root = root.resolve()
    found = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in FORMATS or not path.is_file():
            continue
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        if path.resolve().is_relative_to(real_root):
            found.append(path)
    return found


def _describe(path: Path, request_path: str, source: Source) -> DatasetFile:
    fmt = FORMATS[path.suffix.lower()]
    return DatasetFile(
        name=path.name,
        path=request_path,
        source=source,
        format=fmt,
        size_bytes=path.stat().st_size,
        num_rows=count_rows(path, fmt),
    )


def list_datasets(data_dir: Path, datasets_dir: Path, demo_dir: Path) -> list[DatasetFile]:
    """The data directory's datasets first (paths relative to it), then the demo files."""
    listed = [
        _describe(path, path.relative_to(data_dir).as_posix(), "data")
        for path in _files(datasets_dir)
    ]
    listed += [
        _describe(path, path.relative_to(demo_dir).as_posix(), "demo") for path in _files(demo_dir)
    ]
    return listed
