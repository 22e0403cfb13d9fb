"""``gpt-service evaluate``: a local evaluation of the bundled demo model, progress bar to the
end and the scores written out (its progress poll awaits the store, as the server does)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpt_service.cli import app
from gpt_service.config import DEMO_MODEL_DIR

pytestmark = pytest.mark.skipif(
    not (DEMO_MODEL_DIR / "config.json").is_file(),
    reason="the bundled demo model is not built (make demo-model)",
)


def test_local_evaluate_of_the_demo_model_writes_its_scores(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    args = ["evaluate", "--dataset", "test.jsonl", "--metrics", "exact_match,chrf"]
    args += ["--max-samples", "3", "--max-tokens", "8", "--data-dir", str(tmp_path / "data")]
    result = CliRunner().invoke(app, [*args, "--output", str(output)])
    assert result.exit_code == 0, result.output
    saved = json.loads(output.read_text(encoding="utf-8"))
    assert saved["num_samples"] == 3
    assert set(saved["scores"]) == {"exact_match", "chrf"}
    assert "exact_match" in result.output  # the scores table
