"""Confinement of user-supplied paths to configured roots."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from gpt_service.errors import PathNotAllowed


def resolve_inside(path: str | Path, base: Path, roots: Iterable[Path]) -> Path:
    """Resolve ``path`` (relative paths against ``base``) and require it inside one of ``roots``.

    Symlinks are resolved first, so a link pointing out of a root is refused too.
    """
    raw = Path(path).expanduser()
    candidate = raw if raw.is_absolute() else base / raw
    resolved = candidate.resolve()
    allowed = [Path(r).resolve() for r in roots]
    if any(resolved == root or resolved.is_relative_to(root) for root in allowed):
        return resolved
    shown = ", ".join(str(r) for r in allowed)
    raise PathNotAllowed(f"path '{path}' is outside the allowed directories ({shown})")


def looks_like_hub_id(value: str) -> bool:
    """``org/name`` with no path syntax: treated as a Hugging Face Hub id, not a local path."""
    parts = value.split("/")
    return (
        len(parts) == 2
        and all(parts)
        and not value.startswith((".", "/", "~"))
        and ".." not in value
        and "\\" not in value
    )
