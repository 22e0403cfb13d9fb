"""Forgiving input, clear errors: bodies whatever their Content-Type, malformed JSON located,
misspelled fields named (native API) or logged once (/v1, /api), token ids bounded on every
path that takes them."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import app_client, make_settings
from tests.tiny_models import save_llama

GREEDY = {"temperature": 0, "max_tokens": 4}
# Raw bodies as curl -d sends them: application/x-www-form-urlencoded, or no header at all.
CONTENT_TYPES = [None, "application/x-www-form-urlencoded", "text/plain"]


def _headers(content_type: str | None) -> dict[str, str]:
    return {"content-type": content_type} if content_type else {}


async def _raw_post(
    client: httpx.AsyncClient, path: str, body: bytes, content_type: str | None
) -> httpx.Response:
    request = client.build_request("POST", path, content=body)
    request.headers.pop("content-type", None)  # httpx adds none for raw bytes anyway
    if content_type is not None:
        request.headers["content-type"] = content_type
    return await client.send(request)


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
async def test_json_bodies_are_read_whatever_the_content_type(
    client: httpx.AsyncClient, content_type: str | None
):
    calls = [
        ("/generate", {"prompt": "你好", **GREEDY}, lambda b: b["text"] is not None),
        ("/v1/completions", {"model": "demo", "prompt": "hi", "max_tokens": 2},
         lambda b: b["object"] == "text_completion"),
        ("/api/generate", {"model": "demo", "prompt": "hi", "stream": False,
                           "options": {"num_predict": 2}}, lambda b: b["done"] is True),
    ]  # fmt: skip
    for path, body, check in calls:
        raw = json.dumps(body, ensure_ascii=False).encode()
        r = await _raw_post(client, path, raw, content_type)
        assert r.status_code == 200, (path, content_type, r.text)
        assert check(r.json()), (path, r.text)


async def test_malformed_json_names_line_column_and_the_parser_message(
    client: httpx.AsyncClient,
):
    body = b'{\n  "prompt": "hi",\n  "max_tokens": 8\n  "temperature": 0\n}'
    r = await _raw_post(client, "/generate", body, "application/json")
    assert r.status_code == 400
    detail = r.json()["detail"]
    assert detail == "malformed JSON body at line 4, column 3: Expecting ',' delimiter"
    r = await _raw_post(client, "/v1/chat/completions", b'{"model": "demo",', None)
    assert r.status_code == 400
    assert "line 1, column 18" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("path", "body", "field", "suggestion"),
    [
        ("/generate", {"prompt": "hi", "max_token": 8}, "max_token", "max_tokens"),
        ("/chat", {"messages": [{"role": "user", "content": "hi"}], "temprature": 0},
         "temprature", "temperature"),
        ("/batch", {"prompts": ["a"], "top_pp": 0.5}, "top_pp", "top_p"),
        ("/models/load", {"model_name": "x", "modelpath": "demo"}, "modelpath", "model_path"),
        ("/train", {"base_model": "demo", "dataset_path": "train.jsonl", "epochs": 1},
         "epochs", "num_epochs"),
        ("/evaluate", {"dataset_path": "test.jsonl", "metric": ["bleu"]}, "metric", "metrics"),
    ],
)  # fmt: skip
async def test_native_api_refuses_unknown_fields_suggesting_the_closest(
    client: httpx.AsyncClient, path: str, body: dict, field: str, suggestion: str
):
    r = await client.post(path, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["detail"] == f"unknown field '{field}' (did you mean '{suggestion}'?)"


async def test_an_unknown_field_without_a_close_match_lists_the_known_ones(
    client: httpx.AsyncClient,
):
    r = await client.post("/generate", json={"prompt": "hi", "zzz": 1})
    assert r.status_code == 400
    detail = r.json()["detail"]
    assert detail.startswith("unknown field 'zzz' (known fields: ") and "max_tokens" in detail


async def test_openai_and_ollama_ignore_unknown_fields_but_log_each_once(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
):
    chat = {"model": "demo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    ollama = {"model": "demo", "prompt": "hi", "stream": False, "options": {"num_predict": 2}}
    with caplog.at_level(logging.INFO, logger="gpt_service.schema_base"):
        for _ in range(2):
            r = await client.post("/v1/chat/completions", json={**chat, "max_tokenz": 3})
            assert r.status_code == 200, r.text
            r = await client.post("/api/generate", json={**ollama, "num_predictt": 3})
            assert r.status_code == 200, r.text
    logged = [rec.getMessage() for rec in caplog.records if "unknown field" in rec.getMessage()]
    assert len([m for m in logged if "'max_tokenz'" in m]) == 1, logged
    assert len([m for m in logged if "'num_predictt'" in m]) == 1, logged


# ---- token ids: one check, bounded by what the model can embed ------------------------------
@pytest.fixture
async def wide_tokenizer(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, int]]:
    """A model whose tokenizer has more tokens than its embedding matrix (tokens added after
    training, embeddings not resized), as happens with real checkpoints."""
    from transformers import AutoConfig, AutoTokenizer

    model_dir = tmp_path / "data" / "models" / "wide"
    save_llama(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.add_tokens([f"<extra_{i}>" for i in range(8)])
    tokenizer.save_pretrained(model_dir)
    embedded = AutoConfig.from_pretrained(model_dir).vocab_size
    assert len(tokenizer) > embedded
    settings = make_settings(
        tmp_path / "data", default_model="wide", default_model_path="models/wide"
    )
    async with app_client(settings) as c:
        yield c, embedded


async def test_token_ids_past_the_embeddings_are_400_on_every_path(wide_tokenizer):
    client, embedded = wide_tokenizer
    bad = embedded + 1  # a token the tokenizer knows but the model cannot embed
    r = await client.post("/v1/completions", json={"model": "wide", "prompt": [[1, bad]]})
    assert r.status_code == 400, r.text
    assert f"token id {bad} is outside the vocabulary" in r.json()["error"]["message"]
    body = {"model": "wide", "prompt": "hi", "context": [1, bad], "stream": False}
    r = await client.post("/api/generate", json=body)
    assert r.status_code == 400, r.text
    assert f"token id {bad} is outside the vocabulary" in r.json()["error"]
    # The engine kept serving: the shared step never saw the bad id.
    r = await client.post("/v1/completions", json={"model": "wide", "prompt": [[1, 2]]})
    assert r.status_code == 200, r.text
