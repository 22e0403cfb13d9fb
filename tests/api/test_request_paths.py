"""Paths the OS cannot use (``~nosuchuser``, a NUL byte, a name too long) in any request
field that names a file or directory: a 400 with a readable detail, never a 500."""

from __future__ import annotations

import httpx
import pytest

BAD_PATHS = ["~nosuchuser-gpt/x", "a\x00b", "a" * 300]

REQUESTS = [
    ("/models/load", lambda p: {"model_name": "x", "model_path": p}),
    ("/models/demo/adapters", lambda p: {"adapter_path": p}),
    ("/v1/load_lora_adapter", lambda p: {"lora_name": "x", "lora_path": p}),
    ("/train", lambda p: {"base_model": "demo", "dataset_path": "train.jsonl", "output_dir": p}),
    ("/train", lambda p: {"base_model": "demo", "dataset_path": p, "output_dir": "models/x"}),
    ("/evaluate", lambda p: {"dataset_path": p}),
]


@pytest.mark.parametrize("path", BAD_PATHS, ids=["unknown-user", "nul", "too-long"])
async def test_unusable_paths_are_a_400(client: httpx.AsyncClient, path: str) -> None:
    for route, body in REQUESTS:
        r = await client.post(route, json=body(path))
        assert r.status_code == 400, (route, r.status_code, r.text)
        detail = r.json().get("detail") or r.json()["error"]["message"]
        assert "internal" not in detail, (route, detail)
