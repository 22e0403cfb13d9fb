"""Training workers never inherit the server's own spinning OpenMP policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpt_service.config import SERVER_OMP_MARK, Settings
from gpt_service.training.launcher import worker_env


def _settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


def test_workers_run_passive_when_the_server_chose_active(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    monkeypatch.setenv("GOMP_SPINCOUNT", "100000")
    monkeypatch.setenv(SERVER_OMP_MARK, "1")
    env = worker_env(_settings(tmp_path), 1)
    assert env["OMP_WAIT_POLICY"] == "PASSIVE"
    assert "GOMP_SPINCOUNT" not in env and SERVER_OMP_MARK not in env


def test_a_policy_the_user_set_reaches_the_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    monkeypatch.delenv(SERVER_OMP_MARK, raising=False)
    assert worker_env(_settings(tmp_path), 1)["OMP_WAIT_POLICY"] == "ACTIVE"
