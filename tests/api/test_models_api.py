"""Service info and model management in-process: demo model plus random Llama / GPT-2."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.conftest import app_client, make_settings


@pytest.fixture
async def multi(tiny_dir: Path, tmp_path: Path):
    """The app with the demo model and the tiny models' directory as a read-only model root."""
    async with app_client(make_settings(tmp_path / "data", model_dirs=[tiny_dir])) as c:
        yield c


async def test_root_and_health(client: httpx.AsyncClient):
    root = (await client.get("/")).json()
    assert root["service"] == "GPT Service" and root["version"] == "1.0.0"
    assert root["environment"] == "dev" and "generate" in root["endpoints"]
    health = (await client.get("/health")).json()
    assert health["status"] == "healthy" and health["service"] == "gpt-service"
    assert health["model_manager"] is True
    for key in ("ollama_proxy", "trainer", "evaluator"):
        assert isinstance(health[key], bool)
    store = health["store"]
    assert (store["engine"], store["reachable"], store["push"]) == ("sqlite", True, False)
    assert store["queue_depth"] == 0 and store["leases_held"] == 0
    assert (await client.get("/ready")).json()["ready"] is True


async def test_models_list_and_detail(client: httpx.AsyncClient):
    body = (await client.get("/models")).json()
    assert body["current_model"] == "demo" and body["total_count"] == 1
    assert body["models"][0] == {
        "name": "demo",
        "backend": "local",
        "type": "local",
        "device": "cpu",
        "lora_adapter": None,
        "is_current": True,
    }
    detail = (await client.get("/models/demo")).json()
    assert detail["architecture"] == "Qwen2ForCausalLM"
    assert detail["num_parameters"] > 1_000_000 and detail["context_length"] >= 512
    assert detail["dtype"] == "float32" and detail["loaded_at"]
    r = await client.get("/models/missing")
    assert r.status_code == 404 and "missing" in r.json()["detail"]


@pytest.mark.parametrize(("name", "path"), [("llama", "tiny-llama"), ("gpt2", "tiny-gpt2")])
async def test_other_architectures_load_generate_stream_chat_unload(
    multi: httpx.AsyncClient, tiny_dir: Path, name: str, path: str
):
    model_path = str(tiny_dir / "models" / path)
    r = await multi.post("/models/load", json={"model_name": name, "model_path": model_path})
    assert r.status_code == 200, r.text
    assert r.json()["model"]["name"] == name and r.json()["current_model"] == "demo"
    params = {"model_name": name, "max_tokens": 8, "temperature": 0, "ignore_eos": True}
    gen = (await multi.post("/generate", json={"prompt": "hello", **params})).json()
    assert gen["model_name"] == name and gen["tokens_generated"] == 8
    stream = await multi.post("/generate/stream", json={"prompt": "hello", **params})
    assert stream.status_code == 200 and "event: done" in stream.text
    chat = await multi.post(
        "/chat", json={"messages": [{"role": "user", "content": "你好"}], **params}
    )
    assert chat.status_code == 200 and chat.json()["tokens_generated"] == 8
    again = await multi.post("/models/load", json={"model_name": name, "model_path": model_path})
    assert again.status_code == 409
    assert (await multi.post(f"/models/unload?model_name={name}")).status_code == 200
    assert (await multi.post("/generate", json={"prompt": "hi", **params})).status_code == 404


async def test_switch_changes_the_default_model(multi: httpx.AsyncClient, tiny_dir: Path):
    path = str(tiny_dir / "models" / "tiny-llama")
    await multi.post("/models/load", json={"model_name": "llama", "model_path": path})
    r = await multi.post("/models/switch?model_name=llama")
    assert r.status_code == 200 and r.json()["current_model"] == "llama"
    gen = (await multi.post("/generate", json={"prompt": "hi", "max_tokens": 2})).json()
    assert gen["model_name"] == "llama"
    models = (await multi.get("/models")).json()
    assert {m["name"]: m["is_current"] for m in models["models"]} == {"demo": False, "llama": True}
    assert (await multi.post("/models/switch?model_name=nope")).status_code == 404
    assert (await multi.post("/models/switch")).status_code == 400


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"model_name": "x", "model_path": "../../etc"}, 400),
        ({"model_name": "x", "model_path": "/etc"}, 400),
        ({"model_name": "x", "model_path": "models/does-not-exist"}, 404),
        ({"model_name": "x", "model_path": "nobody/no-such-model"}, 404),
        ({"model_name": "bad name!", "model_path": "demo"}, 400),
        ({"model_name": "demo", "model_path": "demo"}, 409),
        ({"model_name": "x", "model_path": "demo", "lora_adapter": "../../etc"}, 400),
        ({"model_name": "x", "model_path": "demo", "lora_adapter": "models/none"}, 404),
        ({"model_name": "x", "model_path": "demo", "quantization": "int4"}, 400),
        (
            {"model_name": "x", "model_path": "demo", "quantization": "int8", "lora_adapter": "a"},
            400,
        ),
        (
            {
                "model_name": "x",
                "backend": "openai",
                "base_url": "http://127.0.0.1:9/v1",
                "remote_model": "m",
                "quantization": "int8",
            },
            400,
        ),
    ],
)
async def test_load_errors(client: httpx.AsyncClient, body: dict, status: int):
    r = await client.post("/models/load", json=body)
    assert r.status_code == status, r.text
    assert isinstance(r.json()["detail"], str)


async def test_unload_with_requests_in_flight_ends_them_cleanly(
    multi: httpx.AsyncClient, tiny_dir: Path
):
    path = str(tiny_dir / "models" / "tiny-llama")
    await multi.post("/models/load", json={"model_name": "llama", "model_path": path})
    body = {"prompt": "hi", "model_name": "llama", "max_tokens": 2000, "ignore_eos": True}
    pending = [asyncio.create_task(multi.post("/generate", json=body)) for _ in range(3)]
    await asyncio.sleep(0.3)
    assert (await multi.post("/models/unload?model_name=llama")).status_code == 200
    for response in await asyncio.gather(*pending):
        # Either finished before the unload or failed with a clear, non-500 error.
        assert response.status_code in (200, 503), response.text
        assert "detail" in response.json() or "text" in response.json()
    assert (await multi.get("/health")).json()["model_manager"] is True


async def test_an_int8_model_loads_answers_and_refuses_adapters(
    multi: httpx.AsyncClient, tiny_dir: Path
):
    from tests.api.test_evaluation_api import save_random_adapter

    tiny = tiny_dir / "models" / "tiny-llama"
    body = {"model_name": "demo8", "model_path": "demo", "quantization": "int8"}
    r = await multi.post("/models/load", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["model"]["quantization"] == "int8"
    demo = (await multi.get("/models/demo")).json()
    assert demo["quantization"] == "none"
    assert r.json()["model"]["num_parameters"] == demo["num_parameters"]
    params = {"max_tokens": 8, "temperature": 0, "ignore_eos": True}
    for name in ("demo8", "demo"):
        gen = await multi.post("/generate", json={"prompt": "你好", "model_name": name, **params})
        assert gen.status_code == 200 and gen.json()["tokens_generated"] == 8
    settings = multi.app.state.settings  # type: ignore[attr-defined]
    adapter = save_random_adapter(tiny, settings.data_dir / "models" / "lora" / "rand")
    r = await multi.post("/models/demo8/adapters", json={"adapter_path": str(adapter)})
    assert r.status_code == 400 and "quantization" in r.json()["detail"]
