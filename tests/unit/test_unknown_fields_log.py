"""/v1 and /api bodies log each unknown field once, remembering a bounded number of names:
field names come from clients, so new names must not grow the server's memory without end."""

from __future__ import annotations

import logging

import pytest

from gpt_service import schema_base
from gpt_service.api.openai.schemas import EmbeddingRequest


def test_unknown_field_names_are_remembered_up_to_a_bound(
    caplog: pytest.LogCaptureFixture,
) -> None:
    extras = {f"extra_{i}": 1 for i in range(schema_base.MAX_LOGGED_FIELDS + 500)}
    body = EmbeddingRequest.model_validate({"model": "demo", "input": "你好", **extras})
    assert body.model == "demo"  # still ignored, not refused
    assert len(schema_base._logged) <= schema_base.MAX_LOGGED_FIELDS
    with caplog.at_level(logging.INFO, logger="gpt_service.schema_base"):  # still logs new ones
        for _ in range(2):
            EmbeddingRequest.model_validate({"model": "demo", "input": "x", "inputz": 1})
    assert len([r for r in caplog.records if "'inputz'" in r.getMessage()]) == 1
