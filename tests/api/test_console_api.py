"""The console's server side, in-process: the static shell at /ui and GET /datasets."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gpt_service.api import datasets as datasets_api
from gpt_service.api.ui import UI_DIR
from gpt_service.app import create_app
from gpt_service.services.datasets import count_rows
from tests.conftest import make_settings

IMPORT = re.compile(r"""^import .*? from "\./([\w.-]+\.js)";$""", re.M | re.S)


async def app_client(data_dir: Path, **overrides: object) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(data_dir, default_model=None, **overrides))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


@pytest.fixture
async def bare(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The app without a model: neither the console shell nor /datasets needs one."""
    async for client in app_client(tmp_path / "data"):
        yield client


async def test_console_shell_is_served_with_its_security_headers(bare: httpx.AsyncClient):
    redirect = await bare.get("/ui")
    assert redirect.status_code == 307 and redirect.headers["location"].endswith("/ui/")
    page = await bare.get("/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="js/app.js">' in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "unsafe" not in csp
    assert page.headers["cache-control"] == "no-cache"
    script = await bare.get("/ui/js/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert (await bare.get("/ui/js/nothing.js")).status_code == 404
    assert (await bare.get("/ui/%2e%2e/app.py")).status_code == 404


async def test_every_module_the_console_imports_is_served(bare: httpx.AsyncClient):
    modules = sorted((UI_DIR / "js").glob("*.js"))
    imported = {name for m in modules for name in IMPORT.findall(m.read_text(encoding="utf-8"))}
    assert {"api.js", "dom.js", "playground.js", "training.js"} <= imported
    for name in sorted(imported):
        response = await bare.get(f"/ui/js/{name}")
        assert response.status_code == 200, name


async def test_console_needs_no_key_but_its_api_calls_do(tmp_path: Path):
    async for client in app_client(tmp_path / "data", api_keys=["k1"]):
        assert (await client.get("/ui/")).status_code == 200
        assert (await client.get("/ui/styles.css")).status_code == 200
        refused = await client.get("/datasets")
        assert refused.status_code == 401 and "API key" in refused.json()["detail"]
        allowed = await client.get("/datasets", headers={"Authorization": "Bearer k1"})
        assert allowed.status_code == 200


def write_datasets(data_dir: Path, outside: Path) -> None:
    folder = data_dir / "datasets"
    (folder / "sub").mkdir(parents=True)
    rows = [{"input": f"问题{i}", "expected": f"答案{i}"} for i in range(3)]
    text = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows)
    (folder / "a.jsonl").write_text(text + "\n\n", encoding="utf-8")
    # A quoted field spanning two lines is still one row.
    (folder / "sub" / "b.csv").write_text('input,expected\n"x\ny",1\nz,2\n', encoding="utf-8")
    (folder / "c.json").write_text(json.dumps(rows + rows[:1]), encoding="utf-8")
    (folder / "notes.txt").write_text("not a dataset")
    (folder / ".cache").mkdir()
    (folder / ".cache" / "hidden.jsonl").write_text("{}\n")
    outside.write_text("{}\n")
    (folder / "escape.jsonl").symlink_to(outside)


async def test_datasets_lists_data_dir_files_then_demo_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    data_dir = tmp_path / "data"
    write_datasets(data_dir, tmp_path / "secret.jsonl")
    demo = tmp_path / "demo"
    demo.mkdir()
    (demo / "train.jsonl").write_text('{"prompt": "p", "completion": "c"}\n')
    (demo / "README.md").write_text("about the demo data")
    monkeypatch.setattr(datasets_api, "DEMO_DATA_DIR", demo)
    async for client in app_client(data_dir):
        body = (await client.get("/datasets")).json()
    listed = {(d["path"], d["source"], d["format"], d["num_rows"]) for d in body["datasets"]}
    assert listed == {
        ("datasets/a.jsonl", "data", "jsonl", 3),
        ("datasets/sub/b.csv", "data", "csv", 2),
        ("datasets/c.json", "data", "json", 4),
        ("train.jsonl", "demo", "jsonl", 1),
    }
    assert body["total_count"] == 4 and body["datasets"][-1]["source"] == "demo"
    sizes = {d["name"]: d["size_bytes"] for d in body["datasets"]}
    assert sizes["c.json"] == (data_dir / "datasets" / "c.json").stat().st_size


def test_row_count_is_null_for_what_cannot_be_counted(tmp_path: Path):
    broken = tmp_path / "broken.json"
    broken.write_text('[{"input": ')
    assert count_rows(broken, "json") is None
    not_a_list = tmp_path / "object.json"
    not_a_list.write_text('{"input": "x"}')
    assert count_rows(not_a_list, "json") is None
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"input,expected\n\xe9t\xe9,1\n")
    assert count_rows(latin, "csv") is None
