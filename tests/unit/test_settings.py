"""Settings from the environment: list values as people write them, and one readable line
(exit status 2, no traceback) when a setting is invalid."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpt_service.config import Settings


@pytest.mark.parametrize(
    ("value", "keys"),
    [
        ("mykey", ["mykey"]),
        ("key-1, key-2", ["key-1", "key-2"]),
        ('["key-1", "key,2"]', ["key-1", "key,2"]),
        ("", []),
    ],
)
def test_api_keys_take_a_plain_key_a_comma_list_or_a_json_list(
    monkeypatch: pytest.MonkeyPatch, value: str, keys: list[str]
):
    monkeypatch.setenv("GPT_SERVICE_API_KEYS", value)
    assert Settings(_env_file=None).api_keys == keys  # type: ignore[call-arg]


def test_model_dirs_take_a_comma_list_too(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("GPT_SERVICE_MODEL_DIRS", "/srv/models,/mnt/hf")
    assert Settings(_env_file=None).model_dirs == [Path("/srv/models"), Path("/mnt/hf")]  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        ({"GPT_SERVICE_API_KEYS": "[broken"}, [],
         "error: invalid setting GPT_SERVICE_API_KEYS: not a valid JSON list"),
        ({"GPT_SERVICE_ENGINE__MAX_RUNNING": "many"}, [],
         "error: invalid setting GPT_SERVICE_ENGINE__MAX_RUNNING: Input should be a valid integer"),
        ({"GPT_SERVICE_LIMITS": "{not json"}, [], "error: invalid setting GPT_SERVICE_LIMITS: "),
        ({}, ["--device", "gpu"], "error: invalid setting GPT_SERVICE_DEVICE: Input should be"),
        ({"GPT_SERVICE_DATABASE_URL": "mysql://u@db/jobs"}, [],
         "error: invalid setting GPT_SERVICE_DATABASE_URL: 'mysql' is not supported"),
        ({"GPT_SERVICE_DATABASE_URL": "jobs.sqlite3"}, [],
         "error: invalid setting GPT_SERVICE_DATABASE_URL: not a database URL"),
        ({"GPT_SERVICE_ENVIRONMENT": "prod"}, [],
         "error: invalid setting GPT_SERVICE_API_KEYS: refusing to start in the prod environment"),
    ],
)  # fmt: skip
def test_an_invalid_setting_ends_start_up_with_one_line_and_status_2(
    tmp_path: Path, env: dict[str, str], args: list[str], message: str
):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GPT_SERVICE_")}
    result = subprocess.run(
        [sys.executable, "-m", "gpt_service.cli", "serve", "--port", "1", *args],
        env={**clean, **env},
        cwd=tmp_path,  # no .env file here
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
