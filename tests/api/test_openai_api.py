"""/v1 in-process without a model: OpenAI error objects for auth and routing, and the docs."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import app_client, make_settings

KEY = "openai-test-key"


@pytest.fixture
async def keyed(tmp_path: Path):
    async with app_client(
        make_settings(tmp_path / "data", api_keys=[KEY], default_model=None)
    ) as c:
        yield c


async def test_missing_key_is_an_openai_authentication_error(keyed: httpx.AsyncClient):
    response = await keyed.get("/v1/models")
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["type"] == "authentication_error" and "API key" in error["message"]
    assert set(error) == {"message", "type", "param", "code"}
    # The native API keeps its own shape.
    assert "detail" in (await keyed.get("/models")).json()


async def test_with_a_key_no_model_and_unknown_routes(keyed: httpx.AsyncClient):
    auth = {"Authorization": f"Bearer {KEY}"}
    models = await keyed.get("/v1/models", headers=auth)
    assert models.status_code == 200 and models.json() == {"object": "list", "data": []}
    chat = await keyed.post(
        "/v1/chat/completions",
        headers=auth,
        json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
    )
    assert chat.status_code == 404 and chat.json()["error"]["code"] == "model_not_found"
    missing = await keyed.get("/v1/nothing-here", headers=auth)
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    malformed = await keyed.post(
        "/v1/embeddings", headers={**auth, "content-type": "application/json"}, content=b"{"
    )
    assert malformed.status_code == 400
    assert malformed.json()["error"]["type"] == "invalid_request_error"


async def test_openapi_documents_openai_errors_and_sse(keyed: httpx.AsyncClient):
    spec = (await keyed.get("/openapi.json", headers={"X-API-Key": KEY})).json()
    chat = spec["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert "text/event-stream" in chat["200"]["content"]
    assert chat["400"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorResponse")
    assert "422" not in chat
    assert "/models/{model_name}/adapters" in spec["paths"]
