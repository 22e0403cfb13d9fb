"""The README tells a newcomer what its examples need: the packages its Python examples import,
and which of API.md's example values name a model (or file) that must exist first."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
API_MD = ROOT.parent / "shared" / "API.md"
# API.md's request fields whose example values name something that must exist on the server.
NEEDS_SOMETHING = ("model_name", "model_path", "base_model", "lora_adapter", "dataset_path")


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_every_package_the_python_examples_import_has_an_install_line():
    imported = set()
    for block in _python_blocks(README):
        imported |= set(re.findall(r"^(?:from|import) (\w+)", block, flags=re.M))
    third_party = {name for name in imported if name not in sys.stdlib_module_names}
    assert {"requests", "openai"} <= third_party
    installs = " ".join(re.findall(r"pip install ([^\n#]+)", README))
    missing = [name for name in sorted(third_party | {"ollama"}) if name not in installs.split()]
    assert missing == [], f"no 'pip install' line names {missing}"


@pytest.mark.skipif(not API_MD.is_file(), reason="API.md is not beside the repository")
def test_the_readme_names_each_api_md_value_that_needs_a_real_model_or_file():
    api = API_MD.read_text(encoding="utf-8")
    fields = "|".join(NEEDS_SOMETHING)
    values = set(re.findall(rf'"({fields})":\s*"([^"]+)"', api))
    assert values, "API.md has no such example values"
    unexplained = sorted(f"{k}: {v}" for k, v in values if f'"{k}": "{v}"' not in README)
    assert unexplained == []
