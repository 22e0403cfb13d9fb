"""``GET /datasets``: the dataset files a training job or an evaluation can be pointed at."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from gpt_service.api.deps import SettingsDep
from gpt_service.config import DEMO_DATA_DIR
from gpt_service.services.datasets import list_datasets

router = APIRouter(prefix="/datasets", tags=["datasets"])


class DatasetInfo(BaseModel):
    name: str = Field(description="file name")
    path: str = Field(description="the value to send as dataset_path to /train or /evaluate")
    source: Literal["data", "demo"] = Field(
        description="'data': under <data_dir>/datasets; 'demo': bundled with the service"
    )
    format: Literal["json", "jsonl", "csv"]
    size_bytes: int
    num_rows: int | None = Field(description="null when it cannot be counted cheaply")


class DatasetListResponse(BaseModel):
    datasets: list[DatasetInfo]
    total_count: int


@router.get("", response_model=DatasetListResponse, summary="Dataset files (data dir and demo)")
async def datasets(settings: SettingsDep) -> DatasetListResponse:
    files = await asyncio.to_thread(
        list_datasets, settings.data_dir, settings.datasets_dir, DEMO_DATA_DIR
    )
    return DatasetListResponse(
        datasets=[DatasetInfo(**asdict(f)) for f in files], total_count=len(files)
    )
