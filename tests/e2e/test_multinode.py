"""A 2-node training job on loopback: two torchrun launchers (``gpt-service train
--num-nodes 2`` and ``gpt-service join``), one process each, meeting at a c10d rendezvous."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from safetensors import safe_open

from gpt_service.store.jobs import JobStore
from gpt_service.training.config import TRAIN
from tests.e2e.test_training import ENV, make_data_dir

CLI = [sys.executable, "-m", "gpt_service.cli"]
OPTIONS = ["--max-steps", "6", "--batch-size", "2", "--learning-rate", "1e-2", "--lora-r", "4"]


def shapes(adapter: Path) -> dict[str, tuple[int, ...]]:
    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as tensors:
        return {name: tuple(tensors.get_slice(name).get_shape()) for name in tensors.keys()}  # noqa: SIM118


def adapter_config(adapter: Path) -> dict:
    config = json.loads((adapter / "adapter_config.json").read_text())
    return {**config, "target_modules": sorted(config["target_modules"])}  # a set in PEFT


def train_command(data_dir: Path, output: str, *extra: str) -> list[str]:
    command = [*CLI, "train", "models/tiny-llama", "datasets/memorize.jsonl"]
    return [*command, "--data-dir", str(data_dir), "--output-dir", output, *OPTIONS, *extra]


def test_two_nodes_train_like_one(tmp_path: Path) -> None:
    data_dir = make_data_dir(tmp_path / "data")
    env = {**os.environ, **ENV, "HF_HUB_OFFLINE": "1"}
    one = subprocess.run(
        train_command(data_dir, "models/lora/one"), env=env, capture_output=True, timeout=300
    )
    assert one.returncode == 0, one.stderr.decode()

    first = subprocess.Popen(
        train_command(data_dir, "models/lora/two", "--num-nodes", "2"),
        env=env,
        stderr=subprocess.PIPE,
    )
    store = JobStore(f"sqlite:///{data_dir / 'gpt_service.sqlite3'}")
    deadline = time.monotonic() + 60
    jobs: list = []
    while time.monotonic() < deadline and not jobs:
        jobs = [j for j in store.list(TRAIN)[0] if j.params.output_dir == "models/lora/two"]
        time.sleep(0.2)
    job_id = jobs[0].id
    joined = subprocess.run(
        [*CLI, "join", job_id, "--data-dir", str(data_dir)],
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert joined.returncode == 0, joined.stderr.decode()
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr.decode()
    assert f"gpt-service join {job_id}" in stderr.decode().replace("\n", "")  # rich wraps

    job = store.get(job_id, TRAIN)
    assert job.status == "completed" and job.params.rendezvous
    assert job.result["num_nodes"] == 2 and job.result["num_processes"] == 2  # world size
    losses = [p.loss for p in job.progress.loss_history]
    assert len(losses) == 6 and losses[-1] < losses[0]

    single, double = data_dir / "models/lora/one", data_dir / "models/lora/two"
    assert adapter_config(double) == adapter_config(single)
    assert shapes(double) == shapes(single) and shapes(single)
