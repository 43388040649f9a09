"""Request and response bodies of ``/datasets``."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class DatasetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=NAME_PATTERN, description="unique name")
    train: str = Field(
        min_length=1, description="folder in DOTA layout (images/, labelTxt/), relative to the data root"
    )
    val: str | None = Field(default=None, min_length=1, description="validation folder, same rules")
    classes: str | list[str] = Field(
        default="dota1.0", description="dota1.0 | dota1.5 | dota2.0 | 'a,b,c' | a list of names"
    )
    description: str | None = Field(default=None, max_length=10_000)


class DatasetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    train: str = Field(description="relative to the data root")
    val: str | None
    classes: list[str]
    description: str | None
    num_train_images: int | None
    num_val_images: int | None
    created_at: dt.datetime


class DatasetList(BaseModel):
    items: list[DatasetOut]
