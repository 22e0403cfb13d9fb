"""Confinement of user-supplied paths to configured roots."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from gpt_service.errors import NotFound, PathNotAllowed, ServiceError


def user_path(path: str | Path) -> Path:
    """``path`` with ``~`` expanded; ``~nosuchuser`` is the request's fault (400), not a 500."""
    try:
        return Path(path).expanduser()
    except RuntimeError as exc:  # pathlib: "Could not determine home directory."
        raise PathNotAllowed(f"path '{path}' cannot be used: {exc}") from None


@contextmanager
def path_errors() -> Iterator[None]:
    """A path the OS refuses (a NUL byte, a name too long) is the request's fault: 400."""
    try:
        yield
    except ServiceError:
        raise
    except (OSError, ValueError) as exc:
        raise PathNotAllowed(f"unusable path in the request: {exc}") from None


def resolve_inside(path: str | Path, base: Path, roots: Iterable[Path]) -> Path:
    """Resolve ``path`` (relative paths against ``base``) and require it inside one of ``roots``.

    Symlinks are resolved first, so a link pointing out of a root is refused too.
    """
    raw = user_path(path)
    candidate = raw if raw.is_absolute() else base / raw
    resolved = candidate.resolve()
    allowed = [Path(r).resolve() for r in roots]
    if any(resolved == root or resolved.is_relative_to(root) for root in allowed):
        return resolved
    shown = ", ".join(str(r) for r in allowed)
    raise PathNotAllowed(f"path '{path}' is outside the allowed directories ({shown})")


def find_file(
    path: str, data_dir: Path, roots: Sequence[Path], missing: type[NotFound] = NotFound
) -> Path:
    """A file a request names, confined to ``data_dir`` and ``roots``.

    A relative path is tried against the data directory, then each other root (the bundled
    demo data), then the server's working directory when that lands inside the data
    directory: API.md writes ``"dataset_path": "data/train.json"`` for ``./data/train.json``
    with the default data directory ``data``. The 404 lists every place looked at.
    """
    allowed = [data_dir, *roots]
    raw = user_path(path)
    if raw.is_absolute():
        looked = [raw]
    else:
        looked = [base / raw for base in allowed]
        from_cwd = Path.cwd() / raw
        if from_cwd.resolve().is_relative_to(data_dir.resolve()):
            looked.append(from_cwd)
    for candidate in looked:
        if candidate.is_file():
            return resolve_inside(candidate.absolute(), data_dir, allowed)
    resolve_inside(raw, data_dir, allowed)  # outside the directories: 400, not 404
    shown = ", ".join(str(p.resolve()) for p in _unique(looked))
    raise missing(f"dataset '{path}' does not exist (looked for {shown})")


def _unique(paths: list[Path]) -> list[Path]:
    seen: dict[Path, None] = {}
    for p in paths:
        seen.setdefault(p.resolve(), None)
    return list(seen)


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
