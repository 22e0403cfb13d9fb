"""Every security rule of the hardening issue has a test that fails without the rule."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import torch
from safetensors.torch import load_file

from gpt_service.app import create_app
from tests.conftest import app_client, make_settings
from tests.tiny_models import save_llama

KEY = "test-key-123"


@pytest.fixture
async def keyed(tmp_path: Path):
    async with app_client(
        make_settings(tmp_path / "data", api_keys=[KEY], default_model=None)
    ) as c:
        yield c


@pytest.mark.parametrize(
    "path", ["/", "/models", "/metrics", "/train/history", "/evaluate/history"]
)
async def test_routes_need_a_key(keyed: httpx.AsyncClient, path: str):
    r = await keyed.get(path)
    assert r.status_code == 401
    assert "API key" in r.json()["detail"]
    assert r.headers["www-authenticate"] == "Bearer"
    wrong = await keyed.get(path, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "invalid" in wrong.json()["detail"]


async def test_bearer_and_x_api_key_are_accepted(keyed: httpx.AsyncClient):
    assert (
        await keyed.get("/models", headers={"Authorization": f"Bearer {KEY}"})
    ).status_code == 200
    assert (await keyed.get("/models", headers={"X-API-Key": KEY})).status_code == 200


async def test_health_and_docs_stay_open_and_openapi_declares_the_scheme(keyed: httpx.AsyncClient):
    assert (await keyed.get("/health")).status_code == 200
    assert (await keyed.get("/docs")).status_code == 200
    spec = (await keyed.get("/openapi.json")).json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearerAuth"]["scheme"] == "bearer"
    assert {"bearerAuth": []} in spec["security"]


async def test_other_api_families_get_their_own_401_shape(keyed: httpx.AsyncClient):
    r = await keyed.get("/v1/models")
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "authentication_error"
    r = await keyed.get("/api/tags")
    assert r.status_code == 401 and "API key" in r.json()["error"]


def test_prod_refuses_to_start_without_keys(tmp_path: Path):
    with pytest.raises(RuntimeError, match="API keys"):
        create_app(make_settings(tmp_path, environment="prod"))
    create_app(make_settings(tmp_path, environment="prod", allow_open_prod=True))
    create_app(make_settings(tmp_path, environment="prod", api_keys=[KEY]))


async def test_body_over_the_limit_is_413(tmp_path: Path):
    settings = make_settings(tmp_path / "data", default_model=None)
    settings.limits.max_body_bytes = 2048
    async with app_client(settings) as c:
        if True:
            r = await c.post("/generate", json={"prompt": "x" * 5000})
            assert r.status_code == 413 and "limit" in r.json()["detail"]

            async def chunks():
                for _ in range(10):
                    yield json.dumps({"p": "y" * 500}).encode()

            r = await c.post(
                "/generate", content=chunks(), headers={"content-type": "application/json"}
            )
            assert r.status_code == 413


async def test_request_id_is_echoed_or_generated(client: httpx.AsyncClient):
    r = await client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    assert len((await client.get("/health")).headers["x-request-id"]) >= 8


async def test_remote_code_and_pickle_weights_are_refused_by_default(client: httpx.AsyncClient):
    data_dir = client.app.state.settings.data_dir  # type: ignore[attr-defined]
    custom = data_dir / "models" / "custom"
    custom.mkdir(parents=True)
    (custom / "config.json").write_text(
        json.dumps({"model_type": "custom-x", "auto_map": {"AutoModelForCausalLM": "m.Model"}})
    )
    (custom / "m.py").write_text("raise SystemExit('remote code ran')\n")
    r = await client.post(
        "/models/load", json={"model_name": "custom", "model_path": "models/custom"}
    )
    assert r.status_code in (400, 404) and "custom" in r.json()["detail"]
    # A loadable model whose weights are only a pickle (pytorch_model.bin).
    pickled = save_llama(data_dir / "models" / "pickled")
    weights = load_file(pickled / "model.safetensors")
    torch.save(weights, pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    r = await client.post(
        "/models/load", json={"model_name": "pickled", "model_path": "models/pickled"}
    )
    assert r.status_code == 404 and "pickled" in r.json()["detail"]


async def test_symlink_out_of_the_data_dir_is_refused(client: httpx.AsyncClient, tmp_path: Path):
    data_dir = client.app.state.settings.data_dir  # type: ignore[attr-defined]
    outside = tmp_path / "outside-model"
    outside.mkdir()
    (data_dir / "models" / "link").symlink_to(outside)
    r = await client.post("/models/load", json={"model_name": "l", "model_path": "models/link"})
    assert r.status_code == 400 and "outside" in r.json()["detail"]


async def test_metrics_expose_generation_and_http_series(client: httpx.AsyncClient):
    await client.post("/generate", json={"prompt": "你好", "max_tokens": 5})
    text = (await client.get("/metrics")).text
    for series in (
        "gpt_http_requests_total",
        'gpt_generated_tokens_total{model="demo"}',
        "gpt_time_to_first_token_seconds_bucket",
        "gpt_inter_token_latency_seconds_bucket",
        'gpt_queue_depth{model="demo"}',
        'gpt_running_sequences{model="demo"}',
        "gpt_loaded_models 1.0",
    ):
        assert series in text, series
    assert 'route="/generate"' in text
