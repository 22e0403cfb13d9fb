"""The peers' build cache on a machine that never built them (a fresh CI machine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import peers


def test_a_machine_without_the_build_says_not_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # ``is_built`` ran the cache's Python to see whether llama_cpp imports: with no cache it
    # raised FileNotFoundError, so the llama-server tests errored instead of building.
    monkeypatch.setenv("GS_PEERS_CACHE", str(tmp_path / "never-built"))
    assert peers.python() == tmp_path / "never-built" / "venv" / "bin" / "python"
    assert peers.is_built() is False
