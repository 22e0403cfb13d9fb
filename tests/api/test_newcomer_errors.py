"""Errors that tell a newcomer what to do: dataset paths as API.md writes them (and where the
service looked), unknown models (what is loaded, how to load one), a dead Ollama upstream
shown by /health at once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from gpt_service.config import DEMO_DATA_DIR
from tests import fake_upstream
from tests.conftest import app_client, make_settings

ROWS = [{"input": "你好", "expected": "你好"}, {"input": "hi", "expected": "hi"}]


def _write_rows(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(ROWS, ensure_ascii=False), encoding="utf-8")


async def test_dataset_paths_as_api_md_writes_them_are_found_and_still_confined(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """`"dataset_path": "data/train.json"` with the default data directory `data`, the file
    at `./data/train.json`: found from the server's working directory."""
    monkeypatch.chdir(tmp_path)
    _write_rows(tmp_path / "data" / "train.json")
    (tmp_path / "secret.json").write_text(json.dumps(ROWS))
    settings = make_settings(Path("data"))
    async with app_client(settings) as client:
        body = {"dataset_path": "data/train.json", "metrics": ["exact_match"], "max_tokens": 2}
        r = await client.post("/evaluate", json=body)
        assert r.status_code == 200, r.text
        r = await client.post("/evaluate", json={**body, "dataset_path": "../secret.json"})
        assert r.status_code == 400 and "outside" in r.json()["detail"]

        r = await client.post("/evaluate", json={**body, "dataset_path": "data/absent.json"})
        assert r.status_code == 404
        detail = r.json()["detail"]
        data_dir = (tmp_path / "data").resolve()
        for looked in (data_dir / "data/absent.json", data_dir / "absent.json",
                       DEMO_DATA_DIR / "data/absent.json"):  # fmt: skip
            assert str(looked) in detail, detail
        assert detail.startswith("dataset 'data/absent.json' does not exist (looked for ")
        train = {"base_model": "demo", "dataset_path": "data/absent.json"}
        r = await client.post("/train", json=train)
        assert r.status_code == 404 and str(data_dir / "absent.json") in r.json()["detail"]


async def test_an_unknown_model_lists_the_loaded_ones_and_how_to_load_one(
    client: httpx.AsyncClient,
):
    expected = (
        "model 'qwen2-7b-instruct' is not loaded (loaded: 'demo'); load it with POST "
        '/models/load {"model_name": "qwen2-7b-instruct", "model_path": '
        '"<model directory or hub id>"}'
    )
    r = await client.post("/generate", json={"prompt": "hi", "model_name": "qwen2-7b-instruct"})
    assert r.status_code == 404 and r.json()["detail"] == expected
    chat = {"model": "qwen2-7b-instruct", "messages": [{"role": "user", "content": "hi"}]}
    r = await client.post("/v1/chat/completions", json=chat)
    assert r.status_code == 404 and r.json()["error"]["message"] == expected


class _Upstream(fake_upstream.Handler):
    """Just enough of Ollama to be up: its version and an empty model list."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = {"/api/version": {"version": "0.0-test"}, "/api/tags": {"models": []}}
        self.send_json(body.get(self.path, {}))


@pytest.fixture
def upstream() -> Iterator[ThreadingHTTPServer]:
    with fake_upstream.serving(_Upstream) as server:
        yield server


async def test_a_proxied_request_that_cannot_connect_marks_the_upstream_down_at_once(
    tmp_path: Path, upstream: ThreadingHTTPServer
):
    base_url = fake_upstream.url(upstream)
    settings = make_settings(tmp_path / "data", default_model=None, ollama_base_url=base_url)
    async with app_client(settings) as client:
        assert (await client.get("/health")).json()["ollama_proxy"] is True
        assert (await client.get("/ollama/models")).status_code == 200
        fake_upstream.stop(upstream)  # the port now refuses connections
        r = await client.get("/ollama/models")
        assert r.status_code == 503, r.text
        # Within the probe's cache lifetime: the failed request itself says it is down.
        assert (await client.get("/health")).json()["ollama_proxy"] is False
