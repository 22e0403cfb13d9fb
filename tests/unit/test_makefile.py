"""`make serve` and `make test` install once: afterwards they start at once, until
pyproject.toml changes (checked with make's dry run on a stand-in venv)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def dry_run(target: str, venv: Path) -> str:
    result = subprocess.run(
        ["make", "-n", target, f"VENV={venv}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    """A venv that exists (its python) but has had nothing installed yet."""
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.touch(mode=0o755)
    return tmp_path / "venv"


def _age(path: Path, seconds_after_pyproject: float) -> None:
    stamp = (ROOT / "pyproject.toml").stat().st_mtime + seconds_after_pyproject
    os.utime(path, (stamp, stamp))


@pytest.mark.parametrize(("target", "command"), [("serve", "gpt-service serve"),
                                                 ("test", "pytest")])  # fmt: skip
def test_installs_once_then_starts_at_once(venv: Path, target: str, command: str):
    first = dry_run(target, venv)
    assert "pip install -e" in first and command in first

    stamp = venv / (".installed" if target == "serve" else ".installed-dev")
    stamp.touch()
    _age(stamp, 10)
    again = dry_run(target, venv)
    assert "pip install" not in again and command in again

    _age(stamp, -10)  # pyproject.toml changed since: install again
    assert "pip install -e" in dry_run(target, venv)


def test_the_dev_install_counts_for_serve(venv: Path):
    for name in (".installed", ".installed-dev"):
        (venv / name).touch()
        _age(venv / name, 10)
    assert "pip install" not in dry_run("serve", venv)
